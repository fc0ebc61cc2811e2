-- head_summary: how each head's query rows cluster, over all samples of an analysis.
--
-- Also a view of every attnstore.connect() connection (no parameters needed there).
--
-- Parameters: none.
-- Grain: analysis_id, layer, head, query_kind.
-- Columns:
--   analysis_id, run_id, view, layer, head, query_kind,
--   n_samples            problems (samples) summarised
--   mean_silhouette      mean over samples of the best silhouette (null where none)
--   median_silhouette    median of the same
--   modal_k              the k chosen most often (the smaller on ties)
--   modal_k_share        share of samples that chose modal_k
--   mean_svm_accuracy    mean training accuracy of the SVM from x to the clusters
--   mean_nmi_y           mean normalised mutual information of the clusters with y
--   mean_eta2_point      mean share of the point index's variance the clusters explain
--   literal_precision    share of dominant literals that belong to the hidden function
--   literal_recall       share of the hidden function's literals found dominant in some
--                        cluster (samples with at least one target literal)
--   chance_precision     precision of literals drawn at random: mean |target| / (2 n_dims)
--   precision_lift       literal_precision / chance_precision
with
problems as (
    select
        f.analysis_id,
        a.run_id,
        a.view,
        f.layer,
        f.head,
        f.sample,
        f.query_kind,
        f.best_k,
        -- the analysis writes NaN where a problem has no clustering: read it as null
        nullif(f.best_silhouette, 'nan') as best_silhouette,
        nullif(f.svm_accuracy, 'nan') as svm_accuracy,
        nullif(f.nmi_y, 'nan') as nmi_y,
        nullif(f.eta2_point, 'nan') as eta2_point,
    from fits as f
    join analyses as a using (analysis_id)
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

targets as (
    select run_id, sample, literal, sign,
    from functions
    where weight != 0
    group by all
),

target_sizes as (
    select r.run_id, t.sample, count(t.literal) as n_target, any_value(r.n_dims) as n_dims,
    from runs as r
    join targets as t using (run_id)
    group by all
),

dominant as (
    select analysis_id, layer, head, sample, query_kind, literal, sign,
        bool_or(in_target) as in_target,
    from dominant_literals
    where is_dominant
    group by all
),

per_problem as (
    select
        p.analysis_id,
        p.layer,
        p.head,
        p.sample,
        p.query_kind,
        count(d.literal) as n_dominant,
        count(d.literal) filter (where d.in_target) as n_hit,
        any_value(ts.n_target) as n_target,
        any_value(ts.n_dims) as n_dims,
    from problems as p
    left join dominant as d using (analysis_id, layer, head, sample, query_kind)
    left join target_sizes as ts on ts.run_id = p.run_id and ts.sample = p.sample
    where p.best_k >= 2
    group by all
),

literal_scores as (
    select
        analysis_id,
        layer,
        head,
        query_kind,
        sum(n_hit) / nullif(sum(n_dominant), 0) as literal_precision,
        avg(n_hit / n_target) filter (where n_target > 0) as literal_recall,
        avg(coalesce(n_target, 0) / (2 * n_dims)) as chance_precision,
    from per_problem
    group by all
),

summary as (
    select
        analysis_id,
        any_value(run_id) as run_id,
        any_value(view) as view,
        layer,
        head,
        query_kind,
        count(*) as n_samples,
        avg(best_silhouette) as mean_silhouette,
        median(best_silhouette) as median_silhouette,
        avg(svm_accuracy) as mean_svm_accuracy,
        avg(nmi_y) as mean_nmi_y,
        avg(eta2_point) as mean_eta2_point,
    from problems
    group by analysis_id, layer, head, query_kind
)

select
    s.analysis_id,
    s.run_id,
    s.view,
    s.layer,
    s.head,
    s.query_kind,
    s.n_samples,
    s.mean_silhouette,
    s.median_silhouette,
    m.modal_k,
    m.modal_n / s.n_samples as modal_k_share,
    s.mean_svm_accuracy,
    s.mean_nmi_y,
    s.mean_eta2_point,
    l.literal_precision,
    l.literal_recall,
    l.chance_precision,
    l.literal_precision / nullif(l.chance_precision, 0) as precision_lift,
from summary as s
left join modal as m using (analysis_id, layer, head, query_kind)
left join literal_scores as l using (analysis_id, layer, head, query_kind)
order by s.analysis_id, s.layer, s.head, s.query_kind
