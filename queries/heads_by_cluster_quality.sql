-- heads_by_cluster_quality: heads ranked by how cleanly their query rows cluster, per view.
--
-- Every analysis of the run (one per row view, unless a view was analysed twice) ranks its
-- heads and query kinds separately. quality is the best silhouette averaged over samples,
-- counting 0 for a sample whose rows could not be clustered (constant rows), so a head that
-- never varies ranks last; modal_k_share says how consistently one k is chosen. Raw rows
-- often cluster by position alone: a high mean_eta2_point says so (view shared_keys avoids
-- it; see docs/analysis.md). Every column but rank is head_fits'.
--
-- Parameters:
--   $analysis_id: str = null  one analysis of the run; null: every analysis (of $view)
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $view: str{raw,shared_keys,per_example} = null  row view; null: every view
--   $query_kind: str{x,y} = null  'x' or 'y'; null: both
--   $top: int[1..] = null      keep the first $top ranks of each analysis; null: all
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   rank                 1 = cleanest clusters within the analysis (quality, then
--                        modal_k_share)
--   analysis_id, view, backend, layer, head, query_kind,
--   n_samples            samples (problems) of this head and query kind
--   quality              mean over samples of the best silhouette, 0 where none
--   mean_silhouette      mean over samples of the best silhouette (null where none)
--   clustered_share      share of samples with a clustering (best_k >= 2)
--   mean_margin          mean of best minus runner-up silhouette: how clearly k is chosen
--   modal_k              the k chosen most often among the clustered samples (the smaller on
--                        ties; null where none was clustered)
--   modal_k_share        share of all samples that chose modal_k (0 where none was clustered)
--   mean_nmi_y           mean normalised mutual information of the clusters with y
--   mean_eta2_point      mean share of the point index's variance the clusters explain
with
ranked as (
    select
        *,
        row_number() over (
            partition by analysis_id
            order by rank_key(quality) desc, rank_key(modal_k_share) desc, layer, head, query_kind
        ) as rank,
    from head_fits
    where run_id = $run_id and ($view is null or view = $view)
        and ($analysis_id is null or analysis_id = $analysis_id)
        and ($query_kind is null or query_kind = $query_kind)
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
