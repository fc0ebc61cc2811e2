-- silhouette_curve: one head's silhouette (and k-means inertia) against k, over samples.
--
-- The curve behind a head's choice of k: for every k tried, the silhouette averaged over
-- samples and how often that k was the best. Reads one analysis, $analysis_id.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $layer: int[0..]           the head's layer
--   $head: int[0..]            the head
--   $query_kind: str{x,y} = null  'x' or 'y'; null: both
-- Grain: query_kind, k.
-- Columns:
--   analysis_id, view, layer, head, query_kind, k,
--   n_samples            samples with a silhouette at this k (null where k was skipped)
--   mean_silhouette_at_k mean over those samples of the silhouette at this k
--   median_silhouette_at_k median over those samples of the silhouette at this k
--   std_silhouette_at_k  standard deviation over those samples of the silhouette at this k
--   mean_inertia         mean k-means inertia
--   chosen_share         share of all samples whose best k is this k
with
chosen as (
    select analysis_id, view,
    from analyses
    where analysis_id = $analysis_id
),

curve as (
    select
        s.analysis_id,
        s.query_kind,
        s.k,
        count(s.silhouette) as n_samples,
        avg(s.silhouette) as mean_silhouette_at_k,
        median(s.silhouette) as median_silhouette_at_k,
        stddev_samp(s.silhouette) as std_silhouette_at_k,
        avg(s.inertia) as mean_inertia,
    from silhouette as s  -- null where k was skipped (above the distinct rows)
    join chosen using (analysis_id)
    where s.layer = $layer and s.head = $head
        and ($query_kind is null or s.query_kind = $query_kind)
    group by all
),

choices as (
    select
        f.analysis_id,
        f.query_kind,
        f.best_k as k,
        count(*) / any_value(n.n) as chosen_share,
    from fits as f
    join chosen using (analysis_id)
    join (
        select analysis_id, query_kind, count(*) as n,
        from fits
        where layer = $layer and head = $head
        group by all
    ) as n using (analysis_id, query_kind)
    where f.layer = $layer and f.head = $head
    group by all
)

select
    c.analysis_id,
    ch.view,
    $layer as layer,
    $head as head,
    c.query_kind,
    c.k,
    c.n_samples,
    c.mean_silhouette_at_k,
    c.median_silhouette_at_k,
    c.std_silhouette_at_k,
    c.mean_inertia,
    coalesce(k.chosen_share, 0) as chosen_share,
from curve as c
join chosen as ch using (analysis_id)
left join choices as k using (analysis_id, query_kind, k)
order by c.query_kind, c.k
