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
--                              (mean_mass_y, positive_share, chance_share, lift,
--                              excess_mass); another name is refused
--   $view: str{raw,shared_keys,per_example} = 'shared_keys'  the analyses' row view
--   $threshold: float = 0.5    the level the metric must reach and keep
--   $query_kind: str{x,y} = null  the query rows; null: both
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this extraction seed; null: every seed
-- Grain: lineage, layer, head, query_kind, train_step.
-- Columns:
--   lineage              the runs' lineage: 16 hex digits of the md5 of what they share
--   task, seed           the lineage's task and extraction seed
--   layer, head, query_kind,
--   metric               $metric
--   train_step           the checkpoint's training step
--   n_runs               runs of the lineage at this step (with the analysis read)
--   value                the metric at this step (the mean over those runs)
--   above                value >= $threshold (false where value is null)
--   emerged_at           the first step from which value stays >= $threshold; null: never
with
known_metrics (metric, source) as (
    values
        ('mean_silhouette', 'summary'), ('median_silhouette', 'summary'),
        ('modal_k', 'summary'), ('modal_k_share', 'summary'), ('mean_svm_accuracy', 'summary'),
        ('mean_nmi_y', 'summary'), ('mean_eta2_point', 'summary'),
        ('literal_precision', 'summary'), ('literal_recall', 'summary'),
        ('chance_precision', 'summary'), ('precision_lift', 'summary'), ('quality', 'summary'),
        ('clustered_share', 'summary'), ('mean_margin', 'summary'),
        ('mean_dominant', 'summary'), ('chance_recall', 'summary'), ('recall_lift', 'summary'),
        ('literal_f1', 'summary'), ('chance_f1', 'summary'),
        ('mean_mass_y', 'routing'), ('positive_share', 'routing'),
        ('chance_share', 'routing'), ('lift', 'routing'), ('excess_mass', 'routing')
),

-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (
    select
        case
            when count(*) = 0 then error(
                'unknown metric ''' || $metric || '''; known: '
                || (select string_agg(metric, ', ' order by metric) from known_metrics)
            )
            else any_value(source)
        end as source,
    from known_metrics
    where metric = $metric
),

chosen_runs as (
    select
        run_id,
        train_step,
        task,
        seed,
        n_points,
        md5(concat_ws(
            '|', task, coalesce(task_params_json, ''), seed::varchar, n_samples::varchar,
            n_points::varchar, coalesce(json_extract_string(card_json, '$.train'), card_json, '')
        ))[:16] as lineage,
    from runs
    where train_step is not null
        and ($task is null or task = $task) and ($seed is null or seed = $seed)
),

-- head_summary's metrics: the latest analysis of each run with $view
summary_values as (
    select
        a.run_id,
        h.layer,
        h.head,
        h.query_kind,
        case $metric
            when 'mean_silhouette' then h.mean_silhouette
            when 'median_silhouette' then h.median_silhouette
            when 'modal_k' then h.modal_k
            when 'modal_k_share' then h.modal_k_share
            when 'mean_svm_accuracy' then h.mean_svm_accuracy
            when 'mean_nmi_y' then h.mean_nmi_y
            when 'mean_eta2_point' then h.mean_eta2_point
            when 'literal_precision' then h.literal_precision
            when 'literal_recall' then h.literal_recall
            when 'chance_precision' then h.chance_precision
            when 'precision_lift' then h.precision_lift
            when 'quality' then h.quality
            when 'clustered_share' then h.clustered_share
            when 'mean_margin' then h.mean_margin
            when 'mean_dominant' then h.mean_dominant
            when 'chance_recall' then h.chance_recall
            when 'recall_lift' then h.recall_lift
            when 'literal_f1' then h.literal_f1
            when 'chance_f1' then h.chance_f1
        end::double as value,
    from head_summary as h
    join latest_analyses as a using (analysis_id)
    join chosen_runs as r on r.run_id = a.run_id
    where a.view = $view and a.latest_of_view
        and (select source from chosen_metric) = 'summary'
),

-- heads_by_label_routing's metrics, over the rows of points n_points // 2 on (its default)
labels_seen as (
    select
        run_id,
        sample,
        point,
        coalesce(
            sum((y > 0)::int) over (
                partition by run_id, sample order by point
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as positives_before,
        positives_before + (y > 0)::int as positives_upto,
    from inputs
    join chosen_runs using (run_id)
    where (select source from chosen_metric) = 'routing'
),

query_rows as (
    select
        a.run_id,
        a.layer,
        a.head,
        a.query_kind,
        a.mass_y,
        a.mass_y_pos,
        -- an x query at point i sees the labels of points 0..i-1, a y query also its own
        case
            when a.query_kind = 'x' then l.positives_before / a.point
            else l.positives_upto / (a.point + 1)
        end as positive_share_seen,
    from attention as a
    join chosen_runs as r using (run_id)
    join labels_seen as l using (run_id, sample, point)
    where a.point >= r.n_points // 2
        and (a.query_kind = 'y' or a.point >= 1)  -- an x query at point 0 sees no label
        and (select source from chosen_metric) = 'routing'
),

routing_per_head as (
    select
        run_id,
        layer,
        head,
        query_kind,
        avg(mass_y) as mean_mass_y,
        sum(mass_y_pos) / nullif(sum(mass_y), 0) as positive_share,
        sum(mass_y * positive_share_seen) / nullif(sum(mass_y), 0) as chance_share,
        avg(mass_y_pos - mass_y * positive_share_seen) as excess_mass,
    from query_rows
    group by run_id, layer, head, query_kind
),

routing_values as (
    select
        run_id,
        layer,
        head,
        query_kind,
        case $metric
            when 'mean_mass_y' then mean_mass_y
            when 'positive_share' then positive_share
            when 'chance_share' then chance_share
            when 'lift' then positive_share / nullif(chance_share, 0)
            when 'excess_mass' then excess_mass
        end::double as value,
    from routing_per_head
),

run_values as (
    select * from summary_values
    union all
    select * from routing_values
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
