-- head_summary: every per-head metric, over all samples of an analysis.
--
-- The shared view head_summary (queries/views/head_summary.sql), every row of it: how each
-- head's query rows cluster (head_fits) and whether the clusters follow the hidden
-- function's literals (head_literals). Also a view of every attnstore.connect() connection.
--
-- Parameters:
--   $analysis_id: str = null  one analysis; null: every analysis in the store
--   $query_kind: str{x,y} = null  'x' or 'y'; null: both
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
select *
from head_summary
where ($analysis_id is null or analysis_id = $analysis_id)
    and ($query_kind is null or query_kind = $query_kind)
order by analysis_id, layer, head, query_kind
