-- head_metric_estimates: per run, head, query kind and metric: its value and standard error.
--
-- head_metric_values beside head_metric_errors: every metric's value, and for a metric that
-- is a mean over samples its standard error over them (null for the others, and for a run of
-- one sample). What head_emergence, heads_across_runs and structure_null read, so that a
-- value and its interval come from one place.
--
-- Parameters: none.
-- Grain: run_id, view, layer, head, query_kind, metric.
-- Columns:
--   run_id, view, layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   source               where the metric is read: 'summary' (head_summary, of the view) or
--                        'routing' (head_label_routing; view null)
--   value                the metric's value; where a row pools several runs, their mean
--   n_samples            samples with a value (the mean's n)
--   standard_error       stddev_samp / sqrt(n_samples) of the samples' values; null for one
--   has_interval         the metric is a mean over samples (head_metric_errors has it)
select
    v.run_id,
    v.view,
    v.layer,
    v.head,
    v.query_kind,
    v.metric,
    v.source,
    v.value,
    e.n_samples,
    e.standard_error,
    e.metric is not null as has_interval,
from head_metric_values as v
left join head_metric_errors as e
    on e.run_id = v.run_id and e.view is not distinct from v.view and e.layer = v.layer
    and e.head = v.head and e.query_kind = v.query_kind and e.metric = v.metric
