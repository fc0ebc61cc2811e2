-- heads_by_literals: heads whose clusters are explained by the hidden function's literals.
--
-- For each problem (head, query kind, sample) the dominant literals of its clusters (see
-- docs/analysis.md) are compared with the literals of the sample's hidden function. precision
-- is the share of dominant literals that belong to it, recall the share of its literals found
-- dominant in some cluster (0 for a sample that could not be clustered). Each comes with its
-- chance level: the same number of literals drawn at random from the 2 * n_dims. Heads rank by
-- literal_f1, the harmonic mean of precision and recall; the SVM's training accuracy says
-- how linearly the inputs x separate the clusters at all. Null for tasks whose functions are
-- not made of literals (half-spaces, nearest_neighbours).
--
-- Parameters:
--   $run_id = latest_run     the run [default: the latest run in the store]
--   $view: str = null        row view: raw, shared_keys or per_example; null: every view
--   $query_kind: str = null  'x' or 'y'; null: both
--   $top: int = null         keep the first $top ranks of each analysis; null: all
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   rank                 1 = best explained within the analysis (literal_f1, then
--                        precision_lift)
--   analysis_id, view, layer, head, query_kind,
--   n_samples            samples (problems) of this head and query kind
--   mean_svm_accuracy    mean training accuracy of the SVM from x to the clusters
--   mean_dominant        mean number of distinct dominant literals per sample
--   literal_precision    dominant literals in the target / dominant literals (all samples)
--   chance_precision     the same for literals drawn at random: |target| / (2 n_dims)
--   precision_lift       literal_precision / chance_precision
--   literal_recall       mean over samples of target literals found / |target|
--   chance_recall        the same for as many literals drawn at random
--   recall_lift          literal_recall / chance_recall
--   literal_f1           harmonic mean of literal_precision and literal_recall
--   chance_f1            harmonic mean of chance_precision and chance_recall
with
chosen as (
    select a.analysis_id, a.view, r.n_dims,
    from analyses as a
    join runs as r using (run_id)
    where a.run_id = $run_id and ($view is null or a.view = $view)
),

problems as (
    select
        f.analysis_id,
        c.view,
        c.n_dims,
        f.layer,
        f.head,
        f.query_kind,
        f.sample,
        nullif(f.svm_accuracy, 'nan') as svm_accuracy,  -- NaN where no SVM was fitted
    from fits as f
    join chosen as c using (analysis_id)
    where $query_kind is null or f.query_kind = $query_kind
),

targets as (
    select sample, count(*) as n_target,
    from (
        select distinct sample, literal, sign,
        from functions
        where run_id = $run_id and weight != 0
    )
    group by sample
),

dominant as (
    select
        d.analysis_id,
        d.layer,
        d.head,
        d.sample,
        d.query_kind,
        d.literal,
        d.sign,
        bool_or(d.in_target) as in_target,
    from dominant_literals as d
    join chosen as c using (analysis_id)
    where d.is_dominant
    group by all
),

-- in_target is null throughout for tasks whose functions are not made of literals
literal_analyses as (
    select distinct analysis_id,
    from dominant
    where in_target is not null
),

per_problem as (
    select
        p.analysis_id,
        p.view,
        p.layer,
        p.head,
        p.query_kind,
        p.sample,
        any_value(p.svm_accuracy) as svm_accuracy,
        any_value(p.n_dims) as n_dims,
        coalesce(any_value(t.n_target), 0) as n_target,
        count(d.literal) as n_dominant,
        count(d.literal) filter (where d.in_target) as n_hit,
    from problems as p
    join literal_analyses using (analysis_id)
    left join dominant as d using (analysis_id, layer, head, sample, query_kind)
    left join targets as t on t.sample = p.sample
    group by p.analysis_id, p.view, p.layer, p.head, p.query_kind, p.sample
),

per_head as (
    select
        analysis_id,
        any_value(view) as view,
        layer,
        head,
        query_kind,
        count(*) as n_samples,
        avg(svm_accuracy) as mean_svm_accuracy,
        avg(n_dominant) as mean_dominant,
        sum(n_hit) / nullif(sum(n_dominant), 0) as literal_precision,
        sum(n_dominant * n_target / (2 * n_dims)) / nullif(sum(n_dominant), 0)
            as chance_precision,
        avg(n_hit / n_target) filter (where n_target > 0) as literal_recall,
        avg(least(n_dominant / (2 * n_dims), 1)) filter (where n_target > 0)
            as chance_recall,
    from per_problem
    group by analysis_id, layer, head, query_kind
),

scored as (
    select
        *,
        literal_precision / nullif(chance_precision, 0) as precision_lift,
        literal_recall / nullif(chance_recall, 0) as recall_lift,
        2 * literal_precision * literal_recall
            / nullif(literal_precision + literal_recall, 0) as literal_f1,
        2 * chance_precision * chance_recall
            / nullif(chance_precision + chance_recall, 0) as chance_f1,
    from per_head
),

ranked as (
    select
        *,
        row_number() over (
            partition by analysis_id
            order by
                literal_f1 desc nulls last,
                precision_lift desc nulls last,
                layer,
                head,
                query_kind
        ) as rank,
    from scored
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
