-- head_emergence: when each head's metric appears over training: its value at every step.
--
-- Runs that differ only by their checkpoint's train_step form a lineage: the same task and
-- task parameters, extraction seed, samples and points, and checkpoints of one training (the
-- same train config in the card, runs.card_json's "train"; the whole card for a checkpoint
-- with none, e.g. incontext-bool's). A head_summary metric is read from the latest analysis
-- of each run with $view (latest_analyses); a label routing metric, heads_by_label_routing's
-- columns computed as that query does with its default min_point (points n_points // 2 on),
-- needs no analysis of the run and ignores $view. Where runs of a lineage share a step, value
-- is their mean. Runs with no train_step are left out. A lineage is one training: one
-- train_seed (runs.train_seed, null where unknown).
-- Decided on the interval: a metric that is a mean over samples (head_metric_errors: quality,
-- mean_silhouette, clustered_share, mean_margin, mean_svm_accuracy, mean_nmi_y,
-- mean_eta2_point, mean_mass_y, excess_mass) has a 95% interval at each step, value ± 1.96
-- standard errors of the mean over samples (interval_method 'standard_error'; where runs of
-- the lineage share a step, the mean of their standard errors: the same model on the same
-- prompts); such a metric is above $threshold at a step only when its interval's lower bound
-- is (never with one sample: no interval). A metric with no interval (modal_k, medians,
-- literal precision and recall, ratios such as lift) is decided on its value, and says so
-- (interval_method null). emerged_at is the first step from which the metric stays above
-- $threshold at every later step (null where none is).
--
-- Parameters:
--   $metric: str = 'quality'   a per-head metric of head_summary (mean_silhouette,
--                              median_silhouette, modal_k, modal_k_share, mean_svm_accuracy,
--                              mean_nmi_y, mean_eta2_point, literal_precision, literal_recall,
--                              chance_precision, precision_lift, quality, clustered_share,
--                              mean_margin, mean_dominant, chance_recall, recall_lift,
--                              literal_f1, chance_f1) or of heads_by_label_routing
--                              (mean_mass_y, positive_mass_share, chance_share, lift,
--                              excess_mass); another name is refused
--   $view: str{raw,shared_keys,per_example} = 'shared_keys'  the analyses' row view
--   $threshold: float = 0.5    the level the metric's lower bound (its value where it has no
--                              interval) must reach and keep
--   $query_kind: str{x,y} = null  the query rows; null: both
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this prompt seed (runs.seed); null: every
--                              seed
--   $lineage: str = null       only the runs of this lineage; null: every lineage
-- Grain: lineage, layer, head, query_kind, train_step.
-- Columns:
--   lineage              the runs' lineage: 16 hex digits of the md5 of what they share
--   task,
--   seed                 the prompt seed: draws the prompts and hidden functions
--   train_seed,
--   layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   train_step,
--   n_runs               runs of the lineage at this step (with the analysis read)
--   value                the metric's value; where a row pools several runs, their mean
--   value_lower, value_upper  its 95% interval (interval_method); null where it has none
--   interval_method      'standard_error' (over samples) or null: the metric has no interval
--   above                value_lower >= $threshold, or value >= $threshold for a metric with
--                        no interval (false where that is null)
--   emerged_at           the first step from which above stays true; null: never
with
-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (select head_metric_source($metric) as source),

chosen_runs as (
    select l.run_id, l.train_step, l.task, l.seed, r.train_seed, l.lineage,
    from run_lineages as l
    join runs as r using (run_id)
    where l.train_step is not null
        and ($task is null or l.task = $task) and ($seed is null or l.seed = $seed)
        and ($lineage is null or l.lineage = $lineage)
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
        count(*) as n_runs,
        avg(v.value) as value,
        -- the runs of a step: the same model on the same prompts, so not independent
        se_interval(avg(v.value), avg(v.standard_error)) as bounds,
        bool_or(v.has_interval) as has_interval,
    from run_values as v
    join chosen_runs as r using (run_id)
    where $query_kind is null or v.query_kind = $query_kind
    group by r.lineage, v.layer, v.head, v.query_kind, r.train_step
),

flagged as (
    select
        * exclude (bounds),
        bounds.lower as value_lower,
        bounds.upper as value_upper,
        case when has_interval then 'standard_error' end as interval_method,
        coalesce(
            case when has_interval then bounds.lower else value end >= $threshold, false
        ) as above,
        -- above at this step and at every later one
        bool_and(above) over (
            partition by lineage, layer, head, query_kind order by train_step desc
            rows between unbounded preceding and current row
        ) as stays_above,
    from per_step
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
    n_runs,
    value,
    value_lower,
    value_upper,
    interval_method,
    above,
    min(case when stays_above then train_step end) over (
        partition by lineage, layer, head, query_kind
    ) as emerged_at,
from flagged
order by lineage, layer, head, query_kind, train_step
