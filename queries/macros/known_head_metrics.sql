-- known_head_metrics: every per-head metric a query may follow by name, and its source.
--
-- The metrics of head_summary (source 'summary', read from an analysis) and of
-- head_label_routing (source 'routing': the label_routing macro's, from the attention table),
-- in one list: head_metric_values holds their values, head_emergence and heads_across_runs
-- take one name.
--
-- Arguments: none.
-- Returns: a list of STRUCT(metric VARCHAR, source VARCHAR), source 'summary' or 'routing'.
create macro known_head_metrics() as [
    {'metric': m, 'source': 'summary'}
    for m in [
        'mean_silhouette', 'median_silhouette', 'modal_k', 'modal_k_share',
        'mean_svm_accuracy', 'mean_nmi_y', 'mean_eta2_point', 'literal_precision',
        'literal_recall', 'chance_precision', 'precision_lift', 'quality', 'clustered_share',
        'mean_margin', 'mean_dominant', 'chance_recall', 'recall_lift', 'literal_f1', 'chance_f1'
    ]
] || [
    {'metric': m, 'source': 'routing'}
    for m in ['mean_mass_y', 'positive_mass_share', 'chance_share', 'lift', 'excess_mass']
]
