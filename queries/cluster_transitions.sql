-- cluster_transitions: where the tokens of each cluster go in the next layer, in one sample.
--
-- The same query rows (same sample, point and query kind) are clustered once per head and
-- layer. For each cluster of each head at layer l, this counts how its tokens spread over
-- the clusters of every head at layer l + 1: a share of 1 means a cluster moves whole into
-- one cluster above. Cluster numbers are arbitrary within a problem, so transitions are per
-- sample (layer_transitions summarises them over samples). Reads one analysis,
-- $analysis_id.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $sample: int[0..] = 0      the sample (prompt)
--   $query_kind: str{x,y} = 'x'  the query rows: 'x' or 'y'
--   $layer: int[0..] = null    the lower layer l; null: every layer but the last
-- Grain: layer, head, cluster, next_head, next_cluster.
-- Columns:
--   analysis_id, sample, query_kind, layer, head, cluster,
--   cluster_size         query rows in the cluster
--   next_layer           layer + 1
--   next_head            a head at layer + 1
--   next_cluster         a cluster of next_head that some of the cluster's tokens fall into
--   n_tokens             tokens of the cluster that fall into next_cluster
--   share                n_tokens / cluster_size
--   moved_points         the points of those tokens, ascending
with
chosen as (
    select analysis_id,
    from analyses
    where analysis_id = $analysis_id
),

tokens as (
    select c.analysis_id, c.layer, c.head, c.point, c.label as cluster,
    from clusters as c
    join chosen using (analysis_id)
    where c.sample = $sample and c.query_kind = $query_kind
),

sizes as (
    select analysis_id, layer, head, cluster, count(*) as cluster_size,
    from tokens
    group by all
),

moves as (
    select
        lo.analysis_id,
        lo.layer,
        lo.head,
        lo.cluster,
        hi.layer as next_layer,
        hi.head as next_head,
        hi.cluster as next_cluster,
        count(*) as n_tokens,
        list(lo.point order by lo.point) as moved_points,
    from tokens as lo
    join tokens as hi
        on hi.analysis_id = lo.analysis_id and hi.point = lo.point
        and hi.layer = lo.layer + 1
    where $layer is null or lo.layer = $layer
    group by all
)

select
    m.analysis_id,
    $sample as sample,
    $query_kind as query_kind,
    m.layer,
    m.head,
    m.cluster,
    s.cluster_size,
    m.next_layer,
    m.next_head,
    m.next_cluster,
    m.n_tokens,
    m.n_tokens / s.cluster_size as share,
    m.moved_points,
from moves as m
join sizes as s using (analysis_id, layer, head, cluster)
order by m.layer, m.head, m.cluster, m.next_head, m.next_cluster
