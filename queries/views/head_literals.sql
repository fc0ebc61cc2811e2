-- head_literals: whether each head's clusters follow the hidden function's literals.
--
-- One row per analysis, head and query kind, pooled from literal_hits (whose header says
-- what a hit and chance are). One definition of each column, and why:
--   literal_precision = sum(n_hits) / sum(n_dominant): the share of all the head's dominant
--     literals that are in their sample's target.
--   chance_precision = sum(expected_hits) / sum(n_dominant): the same share for as many
--     literals drawn at random in each sample. It is literal_precision's own expectation
--     under chance, so it weighs each sample by its dominant literals as literal_precision
--     does (a plain mean of |target| / (2 n_dims) over samples would not, and would give a
--     level even to a head with no dominant literal).
--   precision_lift = literal_precision / chance_precision = sum(n_hits) / sum(expected_hits):
--     hits over the hits chance would give; 1 = chance.
--   literal_recall = mean over samples with a nonempty target of n_hits / n_target, a sample
--     that could not be clustered counting 0; chance_recall the same for random literals.
--
-- Parameters: none.
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   analysis_id, run_id, view, layer, head, query_kind,
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
-- All but mean_dominant are null for tasks whose functions are not made of literals.
with
pooled as (
    select
        analysis_id,
        run_id,
        view,
        layer,
        head,
        query_kind,
        avg(n_dominant) as mean_dominant,
        sum(n_hits) / nullif(sum(n_dominant), 0) as literal_precision,
        sum(expected_hits) / nullif(sum(n_dominant), 0) as chance_precision,
        avg(literal_recall) as literal_recall,
        avg(chance_recall) as chance_recall,
    from literal_hits
    group by analysis_id, run_id, view, layer, head, query_kind
)

select
    analysis_id,
    run_id,
    view,
    layer,
    head,
    query_kind,
    mean_dominant,
    literal_precision,
    chance_precision,
    literal_precision / nullif(chance_precision, 0) as precision_lift,
    literal_recall,
    chance_recall,
    literal_recall / nullif(chance_recall, 0) as recall_lift,
    2 * literal_precision * literal_recall
        / nullif(literal_precision + literal_recall, 0) as literal_f1,
    2 * chance_precision * chance_recall
        / nullif(chance_precision + chance_recall, 0) as chance_f1,
from pooled
