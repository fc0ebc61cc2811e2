-- layer_transitions: which heads keep the partition of a head in the layer below.
--
-- For every head at layer l and every head at layer l + 1, the adjusted Rand index between
-- their clusterings of the same query rows (same sample, point and query kind; the shared
-- macro adjusted_rand_index), averaged over samples: 1 when the head above splits the tokens
-- exactly as the head below, 0 when no more alike than chance. cluster_transitions shows the
-- flows of one sample. Reads one analysis, $analysis_id.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $query_kind: str{x,y} = 'x'  the query rows: 'x' or 'y'
-- Grain: layer, head, next_head.
-- Columns:
--   analysis_id, query_kind, layer, head,
--   next_layer           layer + 1
--   next_head            a head at layer + 1
--   n_samples            samples compared
--   mean_ari             mean adjusted Rand index of the two clusterings
--   same_k_share         share of samples where the two clusterings compared chose the same k
with
chosen as (
    select analysis_id,
    from analyses
    where analysis_id = $analysis_id
),

tokens as (
    select c.analysis_id, c.layer, c.head, c.sample, c.point, c.best_k, c.label,
    from clusters as c
    join chosen using (analysis_id)
    where c.query_kind = $query_kind
),

-- the labels of the same points under a head and a head of the layer above, per sample
agreement as (
    select
        lo.analysis_id,
        lo.layer,
        lo.head,
        hi.head as next_head,
        lo.sample,
        any_value(lo.best_k) = any_value(hi.best_k) as same_k,
        adjusted_rand_index(lo.label, hi.label) as ari,
    from tokens as lo
    join tokens as hi
        on hi.analysis_id = lo.analysis_id and hi.sample = lo.sample and hi.point = lo.point
        and hi.layer = lo.layer + 1
    group by lo.analysis_id, lo.layer, lo.head, hi.head, lo.sample
)

select
    analysis_id,
    $query_kind as query_kind,
    layer,
    head,
    layer + 1 as next_layer,
    next_head,
    count(*) as n_samples,
    avg(ari) as mean_ari,
    avg(same_k::int) as same_k_share,
from agreement
group by analysis_id, layer, head, next_head
order by layer, head, next_head
