-- heads_across_runs: two groups of runs (two tasks, two seeds) side by side, head by head.
--
-- Side a holds the runs of $task_a, $seed_a and $train_seed_a (null: any), side b those of
-- $task_b, $seed_b and $train_seed_b, each at one training step: $train_step, or where it is
-- null the side's greatest train_step (its runs with no train_step where none has one). A
-- head_summary metric is read from the latest analysis of each run with $view
-- (latest_analyses); a label routing metric is computed as head_emergence computes it (no
-- analysis needed, $view ignored). Each side's value is the mean over its runs, named beside
-- it by their tasks, seeds and step. Heads rank
-- by the size of the difference; a head on one side only (models of other shapes) has nulls
-- on the other and comes first.
-- Two seeds: the prompt seed ($seed_a, runs.seed) re-draws prompts for the same weights
-- (sampling noise); the training seed ($train_seed_a, runs.train_seed) is another model, whose
-- head indices are arbitrary: the same (layer, head) of two trainings need not do the same.
-- With $matched, side b's heads are renamed to side a's before they are compared: each side-b
-- run's head is read as the head of side a that the latest stored matching (attnstore match;
-- latest_matchings) between a run of its lineage and a run of a side-a lineage, either way
-- round, pairs it with. Head identity is stable within a lineage, so one matching of two
-- trainings' final runs names the heads of all their steps; a side-b run of a side-a lineage
-- keeps its heads. A side-b run with no such matching is refused, naming the
-- attnstore match command that makes one.
-- Intervals: a metric that is a mean over samples (head_metric_errors) has a 95% interval
-- beside each side's value and beside the difference, from standard errors over samples: a
-- side's is sqrt(sum of its runs' squared errors) / n_runs, the difference's
-- sqrt(se_a^2 + se_b^2) (the runs taken as independent: for two runs on the same prompts it
-- is conservative); interval_excludes_zero decides whether the sides differ. Other metrics
-- have null intervals (interval_method null).
--
-- Parameters:
--   $metric: str = 'quality'   a per-head metric, as head_emergence accepts; another name is
--                              refused
--   $view: str{raw,shared_keys,per_example} = 'shared_keys'  the analyses' row view
--   $task_a: str = null        side a's task; null: every task
--   $task_b: str = null        side b's task; null: every task
--   $seed_a: int = null        side a's prompt seed (runs.seed); null: every seed
--   $seed_b: int = null        side b's prompt seed (runs.seed); null: every seed
--   $train_seed_a: int = null  side a's training seed (runs.train_seed); null: any
--   $train_seed_b: int = null  side b's training seed (runs.train_seed); null: any
--   $train_step: int[0..] = null  the training step of both sides; null: each side's last
--   $matched: bool = false     rename side b's heads to side a's through the stored matchings
-- Grain: layer, head, query_kind.
-- Columns:
--   rank                 1 = the largest |difference|
--   layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   tasks_a, tasks_b     the tasks of each side's runs, sorted
--   seeds_a, seeds_b     the prompt seeds of each side's runs, sorted
--   train_seeds_a, train_seeds_b  the training seeds of each side's runs, sorted (unknown
--                        ones left out)
--   step_a, step_b       the checkpoint's training step of each side's run(s) (null where
--                        unknown)
--   n_runs_a, n_runs_b   runs averaged on each side
--   heads_b              the head indices side b's runs store for this head, sorted: [head]
--                        unless $matched renamed them
--   match_ids_b          the matchings that renamed side b's heads (empty: none did)
--   value_a, value_b     the metric on each side: the mean over its runs
--   value_a_lower, value_a_upper  value_a's 95% interval; null where it has none
--   value_b_lower, value_b_upper  value_b's 95% interval; null where it has none
--   difference           value_b - value_a
--   difference_lower, difference_upper  its 95% interval; null where it has none
--   interval_method      'standard_error' (over samples) or null: the metric has no interval
--   interval_excludes_zero  the difference's interval lies wholly above or below 0: the
--                        sides differ on the evidence; null where there is no interval
with
-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (select head_metric_source($metric) as source),

matching as (
    select
        s.side,
        r.run_id,
        r.task,
        r.seed,
        r.train_seed,
        r.train_step,
        max(r.train_step) over (partition by s.side) as last_step,
    from runs as r
    cross join (values ('a'), ('b')) as s (side)
    where (s.side = 'a' and ($task_a is null or r.task = $task_a)
            and ($seed_a is null or r.seed = $seed_a)
            and ($train_seed_a is null or r.train_seed = $train_seed_a))
        or (s.side = 'b' and ($task_b is null or r.task = $task_b)
            and ($seed_b is null or r.seed = $seed_b)
            and ($train_seed_b is null or r.train_seed = $train_seed_b))
),

sides as (
    select m.side, m.run_id, m.task, m.seed, m.train_seed, m.train_step, l.lineage,
    from matching as m
    join run_lineages as l using (run_id)
    where m.train_step is not distinct from coalesce($train_step, m.last_step)
),

lineages_a as (select distinct lineage from sides where side = 'a'),

-- $matched: each side-b lineage's heads as side a names them, through the latest matching
-- between one of its runs and a run of a side-a lineage, either way round
renames as (
    select m.lineage_b as lineage, h.layer, h.head_b as head, h.head_a as renamed,
        m.match_id, m.created_at,
    from latest_matchings as m
    join head_matches as h using (match_id)
    where h.matched and m.lineage_recency = 1 and m.lineage_a in (from lineages_a)
    union all
    select m.lineage_a as lineage, h.layer, h.head_a as head, h.head_b as renamed,
        m.match_id, m.created_at,
    from latest_matchings as m
    join head_matches as h using (match_id)
    where h.matched and m.lineage_recency = 1 and m.lineage_b in (from lineages_a)
        and m.lineage_a <> m.lineage_b
),

chosen_renames as (
    select lineage, layer, head, renamed, match_id,
    from renames
    qualify dense_rank() over (
        partition by lineage order by created_at desc, match_id desc
    ) = 1
),

unmatched as (
    select
        error(
            'heads_across_runs: side b''s run ' || s.run_id || ' (lineage ' || s.lineage
            || ') has no stored matching of its heads to a run of side a''s lineages ('
            || coalesce((select string_agg(lineage, ', ' order by lineage) from lineages_a),
                'none') || '); attnstore match --run-a '
            || coalesce((select min(run_id) from sides where side = 'a'), 'A')
            || ' --run-b ' || s.run_id || ' makes one'
        ) as refused,
    from sides as s
    where $matched and s.side = 'b' and s.lineage not in (from lineages_a)
        and s.lineage not in (select lineage from chosen_renames)
),

-- a summary metric from the latest analysis of each run with $view; a routing one needs none
run_values as (
    select run_id, layer, head, query_kind, value, standard_error, has_interval,
    from head_metric_estimates
    where metric = $metric and source = (select source from chosen_metric)
        and (source = 'routing' or view = $view)
        and run_id in (select run_id from sides)
),

-- side b's heads renamed to side a's where $matched asks and a matching renames them
named_values as (
    select
        s.side,
        s.task,
        s.seed,
        s.train_seed,
        s.train_step,
        v.layer,
        coalesce(r.renamed, v.head) as head,
        v.head as stored_head,
        r.match_id,
        v.query_kind,
        v.value,
        v.standard_error,
        v.has_interval,
    from run_values as v
    join sides as s using (run_id)
    left join chosen_renames as r
        on $matched and s.side = 'b' and s.lineage not in (from lineages_a)
        and r.lineage = s.lineage and r.layer = v.layer and r.head = v.head
),

per_side as (
    select
        s.side,
        s.layer,
        s.head,
        s.query_kind,
        any_value(s.train_step) as train_step,
        list(distinct s.task order by s.task) as tasks,
        list(distinct s.seed order by s.seed) as seeds,
        list(distinct s.train_seed order by s.train_seed) filter (
            where s.train_seed is not null
        ) as train_seeds,
        list(distinct s.stored_head order by s.stored_head) as stored_heads,
        coalesce(list(distinct s.match_id order by s.match_id) filter (
            where s.match_id is not null
        ), []) as match_ids,
        count(*) as n_runs,
        avg(s.value) as value,
        -- independent runs: the mean's error from theirs; null if any run has none
        case
            when count(s.standard_error) = count(*)
                then sqrt(sum(s.standard_error ^ 2)) / count(*)
        end as standard_error,
        bool_or(s.has_interval) as has_interval,
    from named_values as s
    group by s.side, s.layer, s.head, s.query_kind
),

side_a as (select * from per_side where side = 'a'),

side_b as (select * from per_side where side = 'b'),

joined as (
    select
        coalesce(a.layer, b.layer) as layer,
        coalesce(a.head, b.head) as head,
        coalesce(a.query_kind, b.query_kind) as query_kind,
        a.tasks as tasks_a,
        b.tasks as tasks_b,
        a.seeds as seeds_a,
        b.seeds as seeds_b,
        coalesce(a.train_seeds, []) as train_seeds_a,
        coalesce(b.train_seeds, []) as train_seeds_b,
        a.train_step as step_a,
        b.train_step as step_b,
        a.n_runs as n_runs_a,
        b.n_runs as n_runs_b,
        b.stored_heads as heads_b,
        coalesce(b.match_ids, []) as match_ids_b,
        a.value as value_a,
        b.value as value_b,
        se_interval(a.value, a.standard_error) as bounds_a,
        se_interval(b.value, b.standard_error) as bounds_b,
        b.value - a.value as difference,
        se_interval(
            b.value - a.value, sqrt(a.standard_error ^ 2 + b.standard_error ^ 2)
        ) as bounds,
        coalesce(a.has_interval, b.has_interval) as has_interval,
    from side_a as a
    full outer join side_b as b using (layer, head, query_kind)
)

select
    row_number() over (
        order by rank_key(abs(difference)) desc nulls first, layer, head, query_kind
    ) as rank,
    layer,
    head,
    query_kind,
    $metric as metric,
    tasks_a,
    tasks_b,
    seeds_a,
    seeds_b,
    train_seeds_a,
    train_seeds_b,
    step_a,
    step_b,
    n_runs_a,
    n_runs_b,
    heads_b,
    match_ids_b,
    value_a,
    bounds_a.lower as value_a_lower,
    bounds_a.upper as value_a_upper,
    value_b,
    bounds_b.lower as value_b_lower,
    bounds_b.upper as value_b_upper,
    difference,
    bounds.lower as difference_lower,
    bounds.upper as difference_upper,
    case when has_interval then 'standard_error' end as interval_method,
    bounds.lower > 0 or bounds.upper < 0 as interval_excludes_zero,
from joined
where (select count(refused) from unmatched) = 0  -- raises the refusal, if any
order by rank
