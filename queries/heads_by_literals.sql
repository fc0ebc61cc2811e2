-- heads_by_literals: heads whose clusters are explained by the hidden function's literals.
--
-- For each problem (head, query kind, sample) the dominant literals of its clusters (see
-- docs/analysis.md) are compared with the literals of the sample's hidden function
-- (literal_hits). precision is the share of dominant literals that belong to it, pooled over
-- samples; recall the share of its literals found dominant in some cluster, averaged over
-- samples (0 for a sample that could not be clustered). Each comes with its chance level: as
-- many literals drawn at random from the 2 * n_dims, so precision_lift is the hits over the
-- hits chance would give. Heads rank by literal_f1, the harmonic mean of precision and
-- recall; the SVM's training accuracy says how linearly the inputs x separate the clusters
-- at all. The literal columns are null for tasks whose functions are not made of literals
-- (half-spaces, nearest_neighbours). Every column but rank is head_summary's.
--
-- Parameters:
--   $analysis_id: str = null  one analysis of the run; null: every analysis (of $view)
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $view: str{raw,shared_keys,per_example} = null  row view; null: every view
--   $query_kind: str{x,y} = null  'x' or 'y'; null: both
--   $top: int[1..] = null      keep the first $top ranks of each analysis; null: all
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   rank                 1 = best explained within the analysis (literal_f1, then
--                        precision_lift)
--   analysis_id, view, layer, head, query_kind,
--   n_samples            samples (problems) of this head and query kind
--   mean_svm_accuracy    mean training accuracy of the SVM from x to the clusters
--   mean_dominant        mean number of distinct dominant literals per sample
--   literal_precision    dominant literals in the target / dominant literals, pooled over
--                        samples (null where none is dominant)
--   chance_precision     literal_precision of as many literals drawn at random: expected hits
--                        / dominant literals, pooled over samples (null where none is
--                        dominant)
--   precision_lift       literal_precision / chance_precision: hits / hits expected by chance
--   literal_recall       mean over samples with a nonempty target of target literals found
--                        dominant / |target| (0 for a sample that could not be clustered)
--   chance_recall        literal_recall of as many literals drawn at random
--   recall_lift          literal_recall / chance_recall
--   literal_f1           harmonic mean of literal_precision and literal_recall
--   chance_f1            harmonic mean of chance_precision and chance_recall
with
ranked as (
    select
        *,
        row_number() over (
            partition by analysis_id
            order by
                rank_key(literal_f1) desc nulls last,
                rank_key(precision_lift) desc nulls last,
                layer,
                head,
                query_kind
        ) as rank,
    from head_summary
    where run_id = $run_id and ($view is null or view = $view)
        and ($analysis_id is null or analysis_id = $analysis_id)
        and ($query_kind is null or query_kind = $query_kind)
)

select
    rank,
    analysis_id,
    view,
    layer,
    head,
    query_kind,
    n_samples,
    mean_svm_accuracy,
    mean_dominant,
    literal_precision,
    chance_precision,
    precision_lift,
    literal_recall,
    chance_recall,
    recall_lift,
    literal_f1,
    chance_f1,
from ranked
where $top is null or rank <= $top
order by view, analysis_id, rank
