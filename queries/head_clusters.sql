-- head_clusters: one head's clusters in one sample: their points, labels and literals.
--
-- What a cluster holds: its points, how many of them are positive examples, and the
-- literals that dominate it (sign + for x_j, - for not x_j, in rank order, * where the
-- literal is in the sample's hidden function), beside the problem's fit (best_k,
-- best_silhouette, svm_accuracy: the fits table's). Reads one analysis, $analysis_id.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $layer: int[0..]           the head's layer
--   $head: int[0..]            the head
--   $sample: int[0..] = 0      the sample (prompt)
--   $query_kind: str{x,y} = null  the query rows: 'x' or 'y'; null: both
-- Grain: query_kind, cluster.
-- Columns:
--   analysis_id, layer, head, sample, query_kind,
--   best_k, best_silhouette, svm_accuracy, cluster,
--   cluster_size         query rows in the cluster
--   positive_label_share share of positive labels (y = +1) among the points the row counts
--   points               the cluster's points, ascending
--   dominant             its dominant literals, best first: '+x3', '-x0*', ...
--   n_dominant_in_target dominant literals that belong to the hidden function
with
chosen as (
    select analysis_id, run_id,
    from analyses
    where analysis_id = $analysis_id
),

problem as (
    select f.analysis_id, f.query_kind, f.best_k, f.best_silhouette, f.svm_accuracy,
    from fits as f
    join chosen using (analysis_id)
    where f.layer = $layer and f.head = $head and f.sample = $sample
        and f.query_kind = coalesce($query_kind, f.query_kind)
),

members as (
    select c.analysis_id, c.query_kind, c.label as cluster, c.point, i.y,
    from clusters as c
    join chosen as ch using (analysis_id)
    join inputs as i on i.run_id = ch.run_id and i.sample = c.sample and i.point = c.point
    where c.layer = $layer and c.head = $head and c.sample = $sample
        and c.query_kind = coalesce($query_kind, c.query_kind)
),

per_cluster as (
    select
        analysis_id,
        query_kind,
        cluster,
        count(*) as cluster_size,
        avg((y > 0)::int) as positive_label_share,
        list(point order by point) as points,
    from members
    group by all
),

literals as (
    select
        d.analysis_id,
        d.query_kind,
        d.cluster,
        list(
            (case when d.sign > 0 then '+' else '-' end) || 'x' || d.literal
                || (case when d.in_target then '*' else '' end)
            order by d.rank
        ) as dominant,
        count(*) filter (where d.in_target) as n_dominant_in_target,
    from dominant_literals as d
    join chosen using (analysis_id)
    where d.layer = $layer and d.head = $head and d.sample = $sample
        and d.query_kind = coalesce($query_kind, d.query_kind) and d.is_dominant
    group by all
)

select
    c.analysis_id,
    $layer as layer,
    $head as head,
    $sample as sample,
    c.query_kind,
    p.best_k,
    p.best_silhouette,
    p.svm_accuracy,
    c.cluster,
    c.cluster_size,
    c.positive_label_share,
    c.points,
    coalesce(l.dominant, []) as dominant,
    coalesce(l.n_dominant_in_target, 0) as n_dominant_in_target,
from per_cluster as c
join problem as p using (analysis_id, query_kind)
left join literals as l using (analysis_id, query_kind, cluster)
order by c.query_kind, c.cluster
