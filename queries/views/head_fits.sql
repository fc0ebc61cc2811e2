-- head_fits: how each head's query rows cluster, over all samples of an analysis.
--
-- One row per analysis, head and query kind, from problem_fits. head_summary holds these
-- columns next to head_literals'; a named query that needs no literal reads this one.
--
-- Parameters: none.
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   analysis_id, run_id, view, backend, layer, head, query_kind,
--   n_samples            problems (samples) summarised
--   quality              mean over samples of the best silhouette, 0 where none
--   mean_silhouette      mean over samples of the best silhouette (null where none)
--   median_silhouette    median over samples of the best silhouette (null where none)
--   clustered_share      share of samples with a clustering (best_k >= 2)
--   mean_margin          mean of best minus runner-up silhouette: how clearly k is chosen
--   modal_k              the k chosen most often among the clustered samples (the smaller on
--                        ties; null where none was clustered)
--   modal_k_share        share of all samples that chose modal_k (0 where none was clustered)
--   mean_svm_accuracy    mean training accuracy of the SVM from x to the clusters
--   mean_nmi_y           mean normalised mutual information of the clusters with y
--   mean_eta2_point      mean share of the point index's variance the clusters explain
with
per_head as (
    select
        analysis_id,
        run_id,
        view,
        backend,
        layer,
        head,
        query_kind,
        count(*) as n_samples,
        avg(quality) as quality,
        avg(best_silhouette) as mean_silhouette,
        median(best_silhouette) as median_silhouette,
        avg(clustered::int) as clustered_share,
        avg(best_silhouette - runner_up_silhouette) as mean_margin,
        histogram(best_k) filter (where clustered) as k_counts,  -- map: k -> samples
        avg(svm_accuracy) as mean_svm_accuracy,
        avg(nmi_y) as mean_nmi_y,
        avg(eta2_point) as mean_eta2_point,
    from problem_fits
    group by analysis_id, run_id, view, backend, layer, head, query_kind
)

select
    analysis_id,
    run_id,
    view,
    backend,
    layer,
    head,
    query_kind,
    n_samples,
    quality,
    mean_silhouette,
    median_silhouette,
    clustered_share,
    mean_margin,
    -- the k chosen by the most samples, the smaller of those on ties
    list_min(
        [e.key for e in map_entries(k_counts) if e.value = list_max(map_values(k_counts))]
    ) as modal_k,
    coalesce(list_max(map_values(k_counts)), 0) / n_samples as modal_k_share,
    mean_svm_accuracy,
    mean_nmi_y,
    mean_eta2_point,
from per_head
