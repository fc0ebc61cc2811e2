-- heads_by_cluster_quality: heads ranked by how cleanly their query rows cluster, per view.
--
-- Every analysis of the run (one per row view, unless a view was analysed twice) ranks its
-- heads and query kinds separately. quality is the best silhouette averaged over samples,
-- counting 0 for a sample whose rows could not be clustered (constant rows), so a head that
-- never varies ranks last; modal_k_share says how consistently one k is chosen. Raw rows
-- often cluster by position alone: a high mean_eta2_point says so (view shared_keys avoids
-- it; see docs/analysis.md).
--
-- Parameters:
--   $run_id = latest_run     the run [default: the latest run in the store]
--   $view: str = null        row view: raw, shared_keys or per_example; null: every view
--   $query_kind: str = null  'x' or 'y'; null: both
--   $top: int = null         keep the first $top ranks of each analysis; null: all
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   rank                 1 = cleanest clusters within the analysis (quality, then
--                        modal_k_share)
--   analysis_id, view, backend, layer, head, query_kind,
--   n_samples            samples (problems) of this head and query kind
--   quality              mean over samples of the best silhouette, 0 where none
--   mean_silhouette      mean best silhouette over the samples that were clustered
--   clustered_share      share of samples with a clustering (best_k >= 2)
--   mean_margin          mean of best minus runner-up silhouette: how clearly k is chosen
--   modal_k              the k chosen most often (the smaller on ties)
--   modal_k_share        share of samples that chose modal_k
--   mean_nmi_y           mean normalised mutual information of the clusters with y
--   mean_eta2_point      mean share of the point index's variance the clusters explain
with
chosen as (
    select analysis_id, view, backend,
    from analyses
    where run_id = $run_id and ($view is null or view = $view)
),

problems as (
    select
        f.analysis_id,
        c.view,
        c.backend,
        f.layer,
        f.head,
        f.query_kind,
        f.sample,
        f.best_k,
        -- the analysis writes NaN where a problem has no clustering: read it as null
        nullif(f.best_silhouette, 'nan') as best_silhouette,
        nullif(f.runner_up_silhouette, 'nan') as runner_up_silhouette,
        nullif(f.nmi_y, 'nan') as nmi_y,
        nullif(f.eta2_point, 'nan') as eta2_point,
    from fits as f
    join chosen as c using (analysis_id)
    where $query_kind is null or f.query_kind = $query_kind
),

k_counts as (
    select analysis_id, layer, head, query_kind, best_k, count(*) as n,
    from problems
    where best_k >= 2
    group by all
),

modal as (
    select analysis_id, layer, head, query_kind, best_k as modal_k, n as modal_n,
    from k_counts
    qualify row_number() over (
        partition by analysis_id, layer, head, query_kind order by n desc, best_k
    ) = 1
),

per_head as (
    select
        analysis_id,
        any_value(view) as view,
        any_value(backend) as backend,
        layer,
        head,
        query_kind,
        count(*) as n_samples,
        avg(coalesce(best_silhouette, 0)) as quality,
        avg(best_silhouette) as mean_silhouette,
        avg((best_k >= 2)::int) as clustered_share,
        avg(best_silhouette - runner_up_silhouette) as mean_margin,
        avg(nmi_y) as mean_nmi_y,
        avg(eta2_point) as mean_eta2_point,
    from problems
    group by analysis_id, layer, head, query_kind
),

ranked as (
    select
        h.*,
        m.modal_k,
        coalesce(m.modal_n, 0) / h.n_samples as modal_k_share,
        row_number() over (
            partition by h.analysis_id
            order by h.quality desc, modal_k_share desc, h.layer, h.head, h.query_kind
        ) as rank,
    from per_head as h
    left join modal as m using (analysis_id, layer, head, query_kind)
)

select
    rank,
    analysis_id,
    view,
    backend,
    layer,
    head,
    query_kind,
    n_samples,
    quality,
    mean_silhouette,
    clustered_share,
    mean_margin,
    modal_k,
    modal_k_share,
    mean_nmi_y,
    mean_eta2_point,
from ranked
where $top is null or rank <= $top
order by view, analysis_id, rank
