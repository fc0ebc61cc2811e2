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
--   n_distinct_rows, best_k,
--   clustered            best_k >= 2
--   best_silhouette, runner_up_silhouette,
--   quality              mean over samples of the best silhouette, 0 where none
--   svm_accuracy, nmi_y, eta2_point, notes,
-- The columns named without a meaning are the fits table's, meant as there. A problem is one
-- sample, so its quality is its best_silhouette, 0 where not clustered.
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
