-- additivity_gap: does a set of heads changed together cost more, or less, than its parts?
--
-- For each intervention of the run that changed a set of heads together (attnstore intervene
-- --heads L1H0,L1H1,...), the latest intervention of the same method, target, resample seed
-- and positions that changed every head one at a time, and per prompt the joint change minus
-- the sum of the single changes of the set's heads (accuracy over the last half of the
-- points). additivity_gap < 0: together they cost more than the sum of their parts (they
-- stand in for one another: redundancy); > 0: less (their effects overlap). Each number has a
-- 95% interval: a paired bootstrap over prompts (attnstore/stats.py; bootstrap_draws). A set
-- without a matching one-at-a-time intervention has null single and gap columns: run
-- 'attnstore intervene' with the same method and --positions, without --heads. A run with no
-- joint intervention has one row, its intervention columns null.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $intervention_id: str = null  one joint intervention; null: every one of the run
-- Grain: intervention_id (the joint intervention).
-- Columns:
--   run_id, intervention_id, method, target,
--   heads                the heads changed together, e.g. L1H0,L1H1,L1H2 (--heads); null:
--                        every head, one at a time
--   changed_positions    the query positions changed: all, x, y, N or N..M
--   single_intervention_id   the one-at-a-time intervention its heads are compared with
--   n_prompts            prompts replayed (each one a paired difference)
--   joint_late_delta_accuracy   the set's late_delta_accuracy
--   joint_late_delta_accuracy_lower, joint_late_delta_accuracy_upper   its 95% interval
--                        (paired bootstrap over prompts)
--   single_late_delta_accuracy_sum   the sum over the set's heads of each one's
--                        late_delta_accuracy, changed alone
--   additivity_gap       joint_late_delta_accuracy - single_late_delta_accuracy_sum
--   additivity_gap_lower, additivity_gap_upper   its 95% interval (paired bootstrap over
--                        prompts)
with
described as (
    select
        i.*,
        i.params_json ->> 'heads' as heads,
        coalesce(i.params_json ->> 'positions', 'all') as changed_positions,
    from interventions as i
    where i.run_id = $run_id
),

joints as (
    select *,
    from described
    where heads is not null and ($intervention_id is null or intervention_id = $intervention_id)
),

-- the latest one-at-a-time intervention of each method, target, seed and positions
singles as (
    select intervention_id, method, target, seed, changed_positions,
    from described
    where heads is null
    qualify row_number() over (
        partition by method, target, seed, changed_positions
        order by created_at desc, intervention_id desc
    ) = 1
),

pairs as (
    select
        j.intervention_id,
        j.method,
        j.target,
        j.heads,
        j.changed_positions,
        s.intervention_id as single_intervention_id,
    from joints as j
    left join singles as s
        on s.method = j.method and s.target = j.target
        and s.seed is not distinct from j.seed and s.changed_positions = j.changed_positions
),

set_heads as (
    select
        p.intervention_id,
        p.single_intervention_id,
        regexp_extract(unnest(string_split(p.heads, ',')), 'L(\d+)H(\d+)', ['layer', 'head'])
            as lh,
    from pairs as p
),

-- each prompt's late change in right points: the set's, and the sum of its heads' alone
joint_prompts as (
    select
        p.intervention_id,
        e.sample,
        sum(e.correct::int - e.base_correct::int) filter (where e.point >= r.n_points // 2)
            as joint_right,
        any_value(r.n_points - r.n_points // 2) as n_late,
    from pairs as p
    join prompt_effects as e using (intervention_id)
    join runs as r on r.run_id = $run_id
    group by p.intervention_id, e.sample
),

single_prompts as (
    select
        h.intervention_id,
        e.sample,
        sum(e.correct::int - e.base_correct::int) filter (where e.point >= r.n_points // 2)
            as single_right,
    from set_heads as h
    join prompt_effects as e
        on e.intervention_id = h.single_intervention_id
        and e.layer = h.lh.layer::smallint and e.head = h.lh.head::smallint
    join runs as r on r.run_id = $run_id
    group by h.intervention_id, e.sample
),

per_prompt as (
    select
        j.intervention_id,
        j.sample,
        j.n_late,
        j.joint_right,
        s.single_right,
        j.joint_right - s.single_right as gap_right,
        row_number() over (partition by j.intervention_id order by j.sample) - 1
            as prompt_index,
        count(*) over (partition by j.intervention_id) as n_prompts,
    from joint_prompts as j
    left join single_prompts as s using (intervention_id, sample)
),

replicates as (
    select
        p.intervention_id,
        d.replicate,
        any_value(p.n_prompts) as n_prompts,
        sum(d.draws * p.joint_right) / any_value(p.n_prompts * p.n_late) as joint_mean,
        sum(d.draws * p.gap_right) / any_value(p.n_prompts * p.n_late) as gap_mean,
    from per_prompt as p, lateral bootstrap_draws(p.n_prompts) as d
    where d.prompt_index = p.prompt_index
    group by p.intervention_id, d.replicate
),

intervals as (
    select
        intervention_id,
        bootstrap_interval(joint_mean, n_prompts) as joint,
        bootstrap_interval(gap_mean, n_prompts) as gap,
    from replicates
    group by intervention_id
),

estimates as (
    select
        intervention_id,
        count(*) as n_prompts,
        sum(joint_right) / sum(n_late) as joint_late_delta_accuracy,
        sum(single_right) / sum(n_late) as single_late_delta_accuracy_sum,
        sum(gap_right) / sum(n_late) as additivity_gap,
    from per_prompt
    group by intervention_id
)

select
    r.run_id,
    p.intervention_id,
    p.method,
    p.target,
    p.heads,
    p.changed_positions,
    p.single_intervention_id,
    e.n_prompts,
    e.joint_late_delta_accuracy,
    i.joint.lower as joint_late_delta_accuracy_lower,
    i.joint.upper as joint_late_delta_accuracy_upper,
    e.single_late_delta_accuracy_sum,
    e.additivity_gap,
    case when p.single_intervention_id is not null then i.gap.lower end as additivity_gap_lower,
    case when p.single_intervention_id is not null then i.gap.upper end as additivity_gap_upper,
from runs as r
left join pairs as p on true
left join estimates as e using (intervention_id)
left join intervals as i using (intervention_id)
where r.run_id = $run_id
order by p.method, p.target, p.heads, p.changed_positions, p.intervention_id
