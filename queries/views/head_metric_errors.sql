-- head_metric_errors: per run, head, query kind and metric: the standard error of its value.
--
-- For the metrics of head_metric_values that are a mean over samples (prompts), the standard
-- error of that mean: stddev_samp / sqrt(n) over the samples' own values (exact for a mean),
-- from which queries give a 95% interval (se_interval). Those metrics, and each sample's value:
--   quality, mean_silhouette, clustered_share, mean_margin, mean_svm_accuracy, mean_nmi_y,
--   mean_eta2_point      the sample's fit (problem_fits, of the latest analysis of the run
--                        with each view): its quality, best_silhouette, clustered,
--                        best - runner-up silhouette, svm_accuracy, nmi_y, eta2_point; a
--                        sample with none (not clustered) is skipped, as the mean skips it
--   mean_mass_y, excess_mass  the mean over the sample's query rows from point n_points // 2
--                        on of mass_y and of mass_y_pos - mass_y * positive_share_seen
--                        (label_routing_rows; every sample has as many rows, so the mean of
--                        these is head_label_routing's value); view null
-- The other metrics (modal_k, medians, literal precision and recall, ratios such as lift)
-- are not a mean over samples and have no row here: no interval.
--
-- Parameters: none.
-- Grain: run_id, view, layer, head, query_kind, metric.
-- Columns:
--   run_id, view, layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   n_samples            samples with a value (the mean's n)
--   standard_error       stddev_samp / sqrt(n_samples) of the samples' values; null for one
with
fit_samples as (
    select
        p.run_id,
        p.view,
        p.layer,
        p.head,
        p.query_kind,
        p.sample,
        p.quality::double as quality,
        p.best_silhouette::double as mean_silhouette,
        p.clustered::int::double as clustered_share,
        (p.best_silhouette - p.runner_up_silhouette)::double as mean_margin,
        p.svm_accuracy::double as mean_svm_accuracy,
        p.nmi_y::double as mean_nmi_y,
        p.eta2_point::double as mean_eta2_point,
    from problem_fits as p
    join latest_analyses as a using (analysis_id)
    where a.latest_of_view
),

routing_samples as (
    select
        run_id,
        null::varchar as view,
        layer,
        head,
        query_kind,
        sample,
        avg(mass_y)::double as mean_mass_y,
        avg(mass_y_pos - mass_y * positive_share_seen)::double as excess_mass,
    from label_routing_rows
    where point >= n_points // 2
    group by run_id, layer, head, query_kind, sample
),

-- one row per sample and metric; unpivot drops the null values (the mean skips them)
sample_values as (
    unpivot fit_samples
    on quality, mean_silhouette, clustered_share, mean_margin, mean_svm_accuracy,
        mean_nmi_y, mean_eta2_point
    into name metric value value
    union all by name
    unpivot routing_samples
    on mean_mass_y, excess_mass
    into name metric value value
)

select
    run_id,
    view,
    layer,
    head,
    query_kind,
    metric,
    count(value) as n_samples,
    stddev_samp(value) / sqrt(count(value)) as standard_error,
from sample_values
group by run_id, view, layer, head, query_kind, metric
