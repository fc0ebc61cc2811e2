-- head_silhouette: one head's silhouette against k in one sample, x and y queries.
--
-- The curve a problem's best k was chosen on (silhouette_curve averages it over samples):
-- the head figure's silhouette panel. Reads one analysis, $analysis_id.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $layer: int[0..]           the head's layer
--   $head: int[0..]            the head
--   $sample: int[0..] = 0      the sample (prompt)
-- Grain: query_kind, k.
-- Columns:
--   analysis_id, layer, head, sample, query_kind, k, silhouette,
select
    analysis_id,
    layer,
    head,
    sample,
    query_kind,
    k,
    silhouette,
from silhouette
where analysis_id = $analysis_id and layer = $layer and head = $head and sample = $sample
order by query_kind, k
