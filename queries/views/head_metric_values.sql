-- head_metric_values: per run, head, query kind and metric of known_head_metrics(): its value.
--
-- A summary metric is head_summary's, read from the latest analysis of the run with each view
-- (latest_analyses; one row per view). A routing metric is head_label_routing's column (as
-- heads_by_label_routing computes it with its default min_point: the rows of
-- label_routing_rows from point n_points // 2 on); it needs no analysis and has view null.
--
-- Parameters: none.
-- Grain: run_id, view, layer, head, query_kind, metric.
-- Columns:
--   run_id, view, layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   source               where the metric is read: 'summary' (head_summary, of the view) or
--                        'routing' (head_label_routing; view null)
--   value                the metric's value; where a row pools several runs, their mean
with
summary_values as (
    select
        a.run_id,
        a.view,
        h.layer,
        h.head,
        h.query_kind,
        m.metric,
        m.source,
        case m.metric
            when 'mean_silhouette' then h.mean_silhouette
            when 'median_silhouette' then h.median_silhouette
            when 'modal_k' then h.modal_k
            when 'modal_k_share' then h.modal_k_share
            when 'mean_svm_accuracy' then h.mean_svm_accuracy
            when 'mean_nmi_y' then h.mean_nmi_y
            when 'mean_eta2_point' then h.mean_eta2_point
            when 'literal_precision' then h.literal_precision
            when 'literal_recall' then h.literal_recall
            when 'chance_precision' then h.chance_precision
            when 'precision_lift' then h.precision_lift
            when 'quality' then h.quality
            when 'clustered_share' then h.clustered_share
            when 'mean_margin' then h.mean_margin
            when 'mean_dominant' then h.mean_dominant
            when 'chance_recall' then h.chance_recall
            when 'recall_lift' then h.recall_lift
            when 'literal_f1' then h.literal_f1
            when 'chance_f1' then h.chance_f1
        end::double as value,
    from head_summary as h
    join latest_analyses as a using (analysis_id)
    cross join (select unnest(known_head_metrics(), recursive := true)) as m
    where a.latest_of_view and m.source = 'summary'
),

routing_values as (
    select
        r.run_id,
        null::varchar as view,
        r.layer,
        r.head,
        r.query_kind,
        m.metric,
        m.source,
        case m.metric
            when 'mean_mass_y' then r.mean_mass_y
            when 'positive_mass_share' then r.positive_mass_share
            when 'chance_share' then r.chance_share
            when 'lift' then r.lift
            when 'excess_mass' then r.excess_mass
        end::double as value,
    from head_label_routing as r
    cross join (select unnest(known_head_metrics(), recursive := true)) as m
    where m.source = 'routing'
)

select * from summary_values
union all
select * from routing_values
