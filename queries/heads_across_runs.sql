-- heads_across_runs: two groups of runs (two tasks, two seeds) side by side, head by head.
--
-- Side a holds the runs of $task_a and $seed_a (null: any), side b those of $task_b and
-- $seed_b, each at one training step: $train_step, or where it is null the side's greatest
-- train_step (its runs with no train_step where none has one). A head_summary metric is read
-- from the latest analysis of each run with $view (latest_analyses); a label routing metric
-- is computed as head_emergence computes it (no analysis needed, $view ignored). Each side's
-- value is the mean over its runs. Heads rank by the size of the difference; a head on one
-- side only (models of other shapes) has nulls on the other and comes first.
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
--   metric               $metric
--   step_a, step_b       the training step of each side (null: runs with none)
--   n_runs_a, n_runs_b   runs averaged on each side
--   value_a, value_b     the metric on each side: the mean over its runs
--   difference           value_b - value_a
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

matching as (
    select
        s.side,
        r.run_id,
        r.train_step,
        r.n_points,
        max(r.train_step) over (partition by s.side) as last_step,
    from runs as r
    cross join (values ('a'), ('b')) as s (side)
    where (s.side = 'a' and ($task_a is null or r.task = $task_a)
            and ($seed_a is null or r.seed = $seed_a))
        or (s.side = 'b' and ($task_b is null or r.task = $task_b)
            and ($seed_b is null or r.seed = $seed_b))
),

sides as (
    select side, run_id, train_step, n_points,
    from matching
    where train_step is not distinct from coalesce($train_step, last_step)
),

chosen_runs as (
    select distinct run_id, n_points,
    from sides
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

per_side as (
    select
        s.side,
        v.layer,
        v.head,
        v.query_kind,
        any_value(s.train_step) as train_step,
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
    step_a,
    step_b,
    n_runs_a,
    n_runs_b,
    value_a,
    value_b,
    difference,
from joined
order by rank
