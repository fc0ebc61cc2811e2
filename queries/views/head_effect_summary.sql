-- head_effect_summary: per intervention and head, the accuracy and logit the head carries.
--
-- prompt_effects (attnstore intervene) averaged over the points of the prompt, and over its
-- last half (points from n_points // 2 on: where an in-context learner has seen enough
-- examples to be right), then over prompts. Each mean and late delta has a 95% interval: a
-- paired bootstrap over prompts (attnstore/stats.py: each prompt's own change, the prompts
-- resampled 1000 times by the seeded draws of bootstrap_draws, the 2.5% and 97.5% quantiles
-- of the replicate means: bootstrap_interval; the same store gives the same bytes). One prompt
-- gives no interval (null). A set of heads changed together (--heads) has layer and head -1.
-- worst_delta_accuracy, a minimum over points, has no interval. Reads head_effects for it and
-- for its refusal of interventions written before per-prompt outcomes.
--
-- Parameters: none.
-- Grain: intervention_id, layer, head.
-- Columns:
--   intervention_id, run_id, method, target,
--   resample_seed        seed of the resample permutation; null for other methods
--   layer, head, n_points,
--   n_prompts            prompts replayed (each one a paired difference)
--   mean_base_accuracy   mean over points of base_accuracy (the unchanged model's)
--   mean_accuracy        mean over points of accuracy (with the head changed)
--   mean_delta_accuracy  mean over points of delta_accuracy
--   mean_delta_accuracy_lower, mean_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   late_delta_accuracy  mean over the last half of the points (n_points // 2 on) of
--                        delta_accuracy
--   late_delta_accuracy_lower, late_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   worst_delta_accuracy the most negative delta_accuracy of any point
--   mean_delta_logit     mean over points of delta_logit
--   mean_delta_logit_lower, mean_delta_logit_upper   its 95% interval (paired bootstrap
--                        over prompts)
--   late_delta_logit     mean over the last half of the points of delta_logit
--   late_delta_logit_lower, late_delta_logit_upper   its 95% interval (paired bootstrap
--                        over prompts)
--   total_kept_rows      knockout: query rows left whole, summed over points
with
points as (
    select
        intervention_id,
        layer,
        head,
        any_value(run_id) as run_id,
        any_value(method) as method,
        any_value(target) as target,
        any_value(resample_seed) as resample_seed,
        min(delta_accuracy) as worst_delta_accuracy,
        sum(kept_rows)::bigint as total_kept_rows,
    from head_effects
    group by intervention_id, layer, head
),

-- each prompt's own change: right points (an integer, so replicate sums are exact) and
-- logit * y, over all points and over the late ones
per_prompt as (
    select
        e.intervention_id,
        e.layer,
        e.head,
        e.sample,
        any_value(r.n_points) as n_points,
        sum(e.correct::int - e.base_correct::int) as delta_right,
        sum(e.correct::int - e.base_correct::int) filter (where e.point >= r.n_points // 2)
            as late_delta_right,
        sum(e.base_correct::int) as base_right,
        sum(e.correct::int) as changed_right,
        fsum(e.signed_logit::double - e.base_signed_logit) as delta_logit_sum,
        fsum(e.signed_logit::double - e.base_signed_logit)
            filter (where e.point >= r.n_points // 2) as late_delta_logit_sum,
    from prompt_effects as e
    join interventions as i using (intervention_id)
    join runs as r on r.run_id = i.run_id
    group by e.intervention_id, e.layer, e.head, e.sample
),

numbered as (
    select
        *,
        row_number() over (partition by intervention_id, layer, head order by sample) - 1
            as prompt_index,
        count(*) over (partition by intervention_id, layer, head) as n_prompts,
        n_points - n_points // 2 as n_late,
    from per_prompt
),

replicates as (
    select
        p.intervention_id,
        p.layer,
        p.head,
        d.replicate,
        any_value(p.n_prompts) as n_prompts,
        sum(d.draws * p.delta_right) / any_value(p.n_prompts * p.n_points) as mean_delta_accuracy,
        sum(d.draws * p.late_delta_right) / any_value(p.n_prompts * p.n_late)
            as late_delta_accuracy,
        fsum(d.draws * p.delta_logit_sum) / any_value(p.n_prompts * p.n_points)
            as mean_delta_logit,
        fsum(d.draws * p.late_delta_logit_sum) / any_value(p.n_prompts * p.n_late)
            as late_delta_logit,
    from numbered as p, lateral bootstrap_draws(p.n_prompts) as d
    where d.prompt_index = p.prompt_index
    group by p.intervention_id, p.layer, p.head, d.replicate
),

intervals as (
    select
        intervention_id,
        layer,
        head,
        bootstrap_interval(mean_delta_accuracy, n_prompts) as mean_delta_accuracy,
        bootstrap_interval(late_delta_accuracy, n_prompts) as late_delta_accuracy,
        bootstrap_interval(mean_delta_logit, n_prompts) as mean_delta_logit,
        bootstrap_interval(late_delta_logit, n_prompts) as late_delta_logit,
    from replicates
    group by intervention_id, layer, head
),

estimates as (
    select
        intervention_id,
        layer,
        head,
        any_value(n_points) as n_points,
        count(*) as n_prompts,
        sum(base_right) / sum(n_points) as mean_base_accuracy,
        sum(changed_right) / sum(n_points) as mean_accuracy,
        sum(delta_right) / sum(n_points) as mean_delta_accuracy,
        sum(late_delta_right) / sum(n_late) as late_delta_accuracy,
        fsum(delta_logit_sum) / sum(n_points) as mean_delta_logit,
        fsum(late_delta_logit_sum) / sum(n_late) as late_delta_logit,
    from numbered
    group by intervention_id, layer, head
)

select
    p.intervention_id,
    p.run_id,
    p.method,
    p.target,
    p.resample_seed,
    p.layer,
    p.head,
    e.n_points,
    e.n_prompts,
    e.mean_base_accuracy,
    e.mean_accuracy,
    e.mean_delta_accuracy,
    i.mean_delta_accuracy.lower as mean_delta_accuracy_lower,
    i.mean_delta_accuracy.upper as mean_delta_accuracy_upper,
    e.late_delta_accuracy,
    i.late_delta_accuracy.lower as late_delta_accuracy_lower,
    i.late_delta_accuracy.upper as late_delta_accuracy_upper,
    p.worst_delta_accuracy,
    e.mean_delta_logit,
    i.mean_delta_logit.lower as mean_delta_logit_lower,
    i.mean_delta_logit.upper as mean_delta_logit_upper,
    e.late_delta_logit,
    i.late_delta_logit.lower as late_delta_logit_lower,
    i.late_delta_logit.upper as late_delta_logit_upper,
    p.total_kept_rows,
from points as p
join estimates as e using (intervention_id, layer, head)
join intervals as i using (intervention_id, layer, head)
