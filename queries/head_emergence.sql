-- head_emergence: when each head's metric appears over training: its value at every step.
--
-- Runs that differ only by their checkpoint's train_step form a lineage: the same task and
-- task parameters, extraction seed, samples and points, and checkpoints of one training (the
-- same train config in the card, runs.card_json's "train"; the whole card for a checkpoint
-- with none, e.g. incontext-bool's). A head_summary metric is read from the latest analysis
-- of each run with $view (latest_analyses); a label routing metric, heads_by_label_routing's
-- columns computed as that query does with its default min_point (points n_points // 2 on),
-- needs no analysis of the run and ignores $view. Where runs of a lineage share a step, value
-- is their mean. Runs with no train_step are left out. emerged_at is the first step at which
-- the value is at least $threshold and stays so at every later step (null where none is).
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
--   $threshold: float = 0.5    the level the metric must reach and keep
--   $query_kind: str{x,y} = null  the query rows; null: both
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this extraction seed; null: every seed
--   $lineage: str = null       only the runs of this lineage; null: every lineage
-- Grain: lineage, layer, head, query_kind, train_step.
-- Columns:
--   lineage              the runs' lineage: 16 hex digits of the md5 of what they share
--   task,
--   seed                 the prompt seed: draws the prompts and hidden functions
--   layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   train_step,
--   n_runs               runs of the lineage at this step (with the analysis read)
--   value                the metric's value; where a row pools several runs, their mean
--   above                value >= $threshold (false where value is null)
--   emerged_at           the first step from which value stays >= $threshold; null: never
with
-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (select head_metric_source($metric) as source),

chosen_runs as (
    select run_id, train_step, task, seed, lineage,
    from run_lineages
    where train_step is not null
        and ($task is null or task = $task) and ($seed is null or seed = $seed)
        and ($lineage is null or lineage = $lineage)
),

-- a summary metric from the latest analysis of each run with $view; a routing one needs none
run_values as (
    select run_id, layer, head, query_kind, value,
    from head_metric_values
    where metric = $metric and source = (select source from chosen_metric)
        and (source = 'routing' or view = $view)
),

per_step as (
    select
        r.lineage,
        any_value(r.task) as task,
        any_value(r.seed) as seed,
        v.layer,
        v.head,
        v.query_kind,
        r.train_step,
        count(*) as n_runs,
        avg(v.value) as value,
    from run_values as v
    join chosen_runs as r using (run_id)
    where $query_kind is null or v.query_kind = $query_kind
    group by r.lineage, v.layer, v.head, v.query_kind, r.train_step
),

flagged as (
    select
        *,
        coalesce(value >= $threshold, false) as above,
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
    layer,
    head,
    query_kind,
    $metric as metric,
    train_step,
    n_runs,
    value,
    above,
    min(case when stays_above then train_step end) over (
        partition by lineage, layer, head, query_kind
    ) as emerged_at,
from flagged
order by lineage, layer, head, query_kind, train_step
