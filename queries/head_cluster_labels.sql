-- head_cluster_labels: one head's cluster of each query row in one sample, x and y queries.
--
-- What the head figure's label strips and the report's attention viewer colour each query
-- row by. Only the rows the analysis's view clustered have one: every point for raw, points
-- m..N-1 for shared_keys and per_example. Reads one analysis, $analysis_id.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $layer: int[0..]           the head's layer
--   $head: int[0..]            the head
--   $sample: int[0..] = 0      the sample (prompt)
-- Grain: query_kind, point.
-- Columns:
--   analysis_id, layer, head, sample, query_kind, point, best_k, cluster,
select
    analysis_id,
    layer,
    head,
    sample,
    query_kind,
    point,
    best_k,
    label as cluster,
from clusters
where analysis_id = $analysis_id and layer = $layer and head = $head and sample = $sample
order by query_kind, point
