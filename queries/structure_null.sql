-- structure_null: each head's metric over training against its value on the untrained
-- weights of the same training (step 0), and the excess.
--
-- A structure metric means "learned" only against the same metric on the untrained model: a
-- model trained for one step already splits its y-query rows by their own label (NMI with y
-- 0.61-0.95) and clusters its x-query rows (silhouette 0.23-0.30). The null of a lineage (runs
-- that differ only by train_step, as head_emergence groups them: one training, the same
-- prompts) is its run at train_step 0: the saved step 0 (train --save-every keeps it), else
-- the run of its fresh initialisation (attnstore untrained: the same weights for the same
-- shape and training seed, its card "init": "fresh"); where a lineage holds both (weights
-- drawn by another torch may differ), the saved one, and the fresh run is left out of every
-- step. A lineage with no step 0 run has null null columns. Values are read as head_emergence
-- reads them (the latest analysis of each run with $view; a label routing metric needs
-- none); where runs of a lineage share a step, value is their mean and its standard error
-- the mean of theirs.
-- Intervals (95%, interval_method 'standard_error') for a metric that is a mean over samples
-- (head_metric_errors): value ± 1.96 standard errors over samples; the excess's from
-- sqrt(se^2 + se_null^2), the two taken as independent (they share prompts, so this is
-- conservative); excess_excludes_zero says whether the step differs from the null on the
-- evidence. Other metrics have null intervals.
--
-- Parameters:
--   $metric: str = 'quality'   a per-head metric, as head_emergence accepts; another name is
--                              refused
--   $view: str{raw,shared_keys,per_example} = 'shared_keys'  the analyses' row view
--   $query_kind: str{x,y} = null  the query rows; null: both
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this prompt seed (runs.seed); null: every
--                              seed
--   $lineage: str = null       only the runs of this lineage; null: every lineage
--   $train_step: int[0..] = null  only this step; null: every step
-- Grain: lineage, layer, head, query_kind, train_step.
-- Columns:
--   lineage              the runs' lineage: 16 hex digits of the md5 of what they share
--   task,
--   seed                 the prompt seed: draws the prompts and hidden functions
--   train_seed,
--   layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   train_step,
--   value                the metric's value; where a row pools several runs, their mean
--   value_lower, value_upper  its 95% interval (interval_method); null where it has none
--   null_value           the metric at train_step 0 of the lineage: the untrained weights
--   null_lower, null_upper  null_value's 95% interval; null where it has none
--   null_source          where the null came from: 'saved step 0' or 'fresh initialisation'
--                        (attnstore untrained); null where there is none
--   excess               value - null_value: what training added
--   excess_lower, excess_upper  its 95% interval; null where it has none
--   excess_excludes_zero the excess's interval lies wholly above or below 0; null where
--                        there is no interval
--   interval_method      'standard_error' (over samples) or null: the metric has no interval
with
-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (select head_metric_source($metric) as source),

chosen_runs as (
    select l.run_id, l.train_step, l.task, l.seed, r.train_seed, l.lineage,
        -- a model written by attnstore untrained: its card says "init": "fresh"
        coalesce(json_extract_string(r.card_json, '$.init') = 'fresh', false) as is_fresh,
    from run_lineages as l
    join runs as r using (run_id)
    where l.train_step is not null
        and ($task is null or l.task = $task) and ($seed is null or l.seed = $seed)
        and ($lineage is null or l.lineage = $lineage)
    -- a fresh initialisation stands in for a lineage's step 0 only where none was saved
    qualify not is_fresh or not bool_or(l.train_step = 0 and not is_fresh) over (
        partition by l.lineage
    )
),

-- a summary metric from the latest analysis of each run with $view; a routing one needs none
run_values as (
    select run_id, layer, head, query_kind, value, standard_error, has_interval,
    from head_metric_estimates
    where metric = $metric and source = (select source from chosen_metric)
        and (source = 'routing' or view = $view)
),

per_step as (
    select
        r.lineage,
        any_value(r.task) as task,
        any_value(r.seed) as seed,
        any_value(r.train_seed) as train_seed,
        v.layer,
        v.head,
        v.query_kind,
        r.train_step,
        avg(v.value) as value,
        -- the runs of a step: the same model on the same prompts, so not independent
        avg(v.standard_error) as standard_error,
        bool_or(v.has_interval) as has_interval,
        bool_or(r.is_fresh) as is_fresh,
    from run_values as v
    join chosen_runs as r using (run_id)
    where $query_kind is null or v.query_kind = $query_kind
    group by r.lineage, v.layer, v.head, v.query_kind, r.train_step
),

with_null as (
    select
        s.*,
        z.value as null_value,
        z.standard_error as null_standard_error,
        case when z.is_fresh then 'fresh initialisation' when not z.is_fresh then 'saved step 0'
        end as null_source,
        se_interval(s.value, s.standard_error) as bounds,
        se_interval(z.value, z.standard_error) as null_bounds,
        se_interval(
            s.value - z.value, sqrt(s.standard_error ^ 2 + z.standard_error ^ 2)
        ) as excess_bounds,
    from per_step as s
    left join per_step as z
        on z.lineage = s.lineage and z.layer = s.layer and z.head = s.head
        and z.query_kind = s.query_kind and z.train_step = 0
    where $train_step is null or s.train_step = $train_step
)

select
    lineage,
    task,
    seed,
    train_seed,
    layer,
    head,
    query_kind,
    $metric as metric,
    train_step,
    value,
    bounds.lower as value_lower,
    bounds.upper as value_upper,
    null_value,
    null_bounds.lower as null_lower,
    null_bounds.upper as null_upper,
    null_source,
    value - null_value as excess,
    excess_bounds.lower as excess_lower,
    excess_bounds.upper as excess_upper,
    excess_bounds.lower > 0 or excess_bounds.upper < 0 as excess_excludes_zero,
    case when has_interval then 'standard_error' end as interval_method,
from with_null
order by lineage, layer, head, query_kind, train_step
