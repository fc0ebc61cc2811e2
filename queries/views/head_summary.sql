-- head_summary: every per-head metric, over all samples of an analysis.
--
-- One row per analysis, head and query kind: head_fits (how the rows cluster) next to
-- head_literals (whether the clusters follow the hidden function's literals), where each
-- column is defined. Every named query that outputs one of these columns reads it from one of
-- the three, so a column name means one thing wherever it appears. Also a view of every
-- attnstore.connect() connection.
--
-- Parameters: none.
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   analysis_id, run_id, view, backend, layer, head, query_kind,
--   n_samples            problems (samples) summarised
--   mean_silhouette      mean over samples of the best silhouette (null where none)
--   median_silhouette    median over samples of the best silhouette (null where none)
--   modal_k              the k chosen most often among the clustered samples (the smaller on
--                        ties; null where none was clustered)
--   modal_k_share        share of all samples that chose modal_k (0 where none was clustered)
--   mean_svm_accuracy    mean training accuracy of the SVM from x to the clusters
--   mean_nmi_y           mean normalised mutual information of the clusters with y
--   mean_eta2_point      mean share of the point index's variance the clusters explain
--   literal_precision    dominant literals in the target / dominant literals, pooled over
--                        samples (null where none is dominant)
--   literal_recall       mean over samples with a nonempty target of target literals found
--                        dominant / |target| (0 for a sample that could not be clustered)
--   chance_precision     literal_precision of as many literals drawn at random: expected hits
--                        / dominant literals, pooled over samples (null where none is
--                        dominant)
--   precision_lift       literal_precision / chance_precision: hits / hits expected by chance
--   quality              mean over samples of the best silhouette, 0 where none
--   clustered_share      share of samples with a clustering (best_k >= 2)
--   mean_margin          mean of best minus runner-up silhouette: how clearly k is chosen
--   mean_dominant        mean number of distinct dominant literals per sample
--   chance_recall        literal_recall of as many literals drawn at random
--   recall_lift          literal_recall / chance_recall
--   literal_f1           harmonic mean of literal_precision and literal_recall
--   chance_f1            harmonic mean of chance_precision and chance_recall
-- The literal columns are null for tasks whose functions are not made of literals.
select
    f.analysis_id,
    f.run_id,
    f.view,
    f.layer,
    f.head,
    f.query_kind,
    f.n_samples,
    f.mean_silhouette,
    f.median_silhouette,
    f.modal_k,
    f.modal_k_share,
    f.mean_svm_accuracy,
    f.mean_nmi_y,
    f.mean_eta2_point,
    l.literal_precision,
    l.literal_recall,
    l.chance_precision,
    l.precision_lift,
    f.backend,
    f.quality,
    f.clustered_share,
    f.mean_margin,
    l.mean_dominant,
    l.chance_recall,
    l.recall_lift,
    l.literal_f1,
    l.chance_f1,
from head_fits as f
join head_literals as l using (analysis_id, layer, head, query_kind)
