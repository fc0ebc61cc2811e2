-- heads_across_runs: two groups of runs (two tasks, two seeds) side by side, head by head.
--
-- Side a holds the runs of $task_a and $seed_a (null: any), side b those of $task_b and
-- $seed_b, each at one training step: $train_step, or where it is null the side's greatest
-- train_step (its runs with no train_step where none has one). A head_summary metric is read
-- from the latest analysis of each run with $view (latest_analyses); a label routing metric
-- is computed as head_emergence computes it (no analysis needed, $view ignored). Each side's
-- value is the mean over its runs, named beside it by their tasks, seeds and step. Heads rank
-- by the size of the difference; a head on one side only (models of other shapes) has nulls
-- on the other and comes first.
--
-- Parameters:
--   $metric: str = 'quality'   a per-head metric, as head_emergence accepts; another name is
--                              refused
--   $view: str{raw,shared_keys,per_example} = 'shared_keys'  the analyses' row view
--   $task_a: str = null        side a's task; null: every task
--   $task_b: str = null        side b's task; null: every task
--   $seed_a: int = null        side a's extraction seed; null: every seed
--   $seed_b: int = null        side b's extraction seed; null: every seed
--   $train_step: int[0..] = null  the training step of both sides; null: each side's last
-- Grain: layer, head, query_kind.
-- Columns:
--   rank                 1 = the largest |difference|
--   layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   tasks_a, tasks_b     the tasks of each side's runs, sorted
--   seeds_a, seeds_b     the prompt seeds of each side's runs, sorted
--   step_a, step_b       the checkpoint's training step of each side's run(s) (null where
--                        unknown)
--   n_runs_a, n_runs_b   runs averaged on each side
--   value_a, value_b     the metric on each side: the mean over its runs
--   difference           value_b - value_a
with
-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (select head_metric_source($metric) as source),

matching as (
    select
        s.side,
        r.run_id,
        r.task,
        r.seed,
        r.train_step,
        max(r.train_step) over (partition by s.side) as last_step,
    from runs as r
    cross join (values ('a'), ('b')) as s (side)
    where (s.side = 'a' and ($task_a is null or r.task = $task_a)
            and ($seed_a is null or r.seed = $seed_a))
        or (s.side = 'b' and ($task_b is null or r.task = $task_b)
            and ($seed_b is null or r.seed = $seed_b))
),

sides as (
    select side, run_id, task, seed, train_step,
    from matching
    where train_step is not distinct from coalesce($train_step, last_step)
),

-- a summary metric from the latest analysis of each run with $view; a routing one needs none
run_values as (
    select run_id, layer, head, query_kind, value,
    from head_metric_values
    where metric = $metric and source = (select source from chosen_metric)
        and (source = 'routing' or view = $view)
        and run_id in (select run_id from sides)
),

per_side as (
    select
        s.side,
        v.layer,
        v.head,
        v.query_kind,
        any_value(s.train_step) as train_step,
        list(distinct s.task order by s.task) as tasks,
        list(distinct s.seed order by s.seed) as seeds,
        count(*) as n_runs,
        avg(v.value) as value,
    from run_values as v
    join sides as s using (run_id)
    group by s.side, v.layer, v.head, v.query_kind
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
        a.train_step as step_a,
        b.train_step as step_b,
        a.n_runs as n_runs_a,
        b.n_runs as n_runs_b,
        a.value as value_a,
        b.value as value_b,
        b.value - a.value as difference,
    from side_a as a
    full outer join side_b as b using (layer, head, query_kind)
)

select
    row_number() over (
        order by abs(difference) desc nulls first, layer, head, query_kind
    ) as rank,
    layer,
    head,
    query_kind,
    $metric as metric,
    tasks_a,
    tasks_b,
    seeds_a,
    seeds_b,
    step_a,
    step_b,
    n_runs_a,
    n_runs_b,
    value_a,
    value_b,
    difference,
from joined
order by rank
