-- problem_fits: one row per problem (layer, head, sample, query kind) of every analysis.
--
-- The fits table with what queries filter and group on beside it: the analysis's run, row
-- view and backend. A problem whose rows could not be clustered (fewer than two distinct
-- rows: best_k = 1) has no silhouette, SVM, NMI or eta2: the analysis stores null there, so
-- avg() and median() skip those problems; quality counts them as 0 instead.
--
-- Parameters: none.
-- Grain: analysis_id, layer, head, sample, query_kind.
-- Columns:
--   analysis_id, run_id, view, backend, layer, head, sample, query_kind,
--   n_rows               query rows clustered (points in the row view)
--   n_distinct_rows      distinct rows among them
--   best_k               the k chosen (1: not clustered)
--   clustered            best_k >= 2
--   best_silhouette      silhouette at best_k (null where not clustered)
--   runner_up_silhouette the second-best silhouette over the k tried (null where none)
--   quality              best_silhouette, 0 where not clustered
--   svm_accuracy         training accuracy of the SVM from x to the clusters (null: no SVM)
--   nmi_y                normalised mutual information of the clusters with y (null: none)
--   eta2_point           share of the point index's variance the clusters explain (null: none)
--   notes                what the analysis noted about the problem (docs/analysis.md)
select
    f.analysis_id,
    a.run_id,
    a.view,
    a.backend,
    f.layer,
    f.head,
    f.sample,
    f.query_kind,
    f.n_rows,
    f.n_distinct_rows,
    f.best_k,
    f.best_k >= 2 as clustered,
    f.best_silhouette,
    f.runner_up_silhouette,
    coalesce(f.best_silhouette, 0) as quality,
    f.svm_accuracy,
    f.nmi_y,
    f.eta2_point,
    f.notes,
from fits as f
join analyses as a using (analysis_id)
