-- layer_transitions: which heads keep the partition of a head in the layer below.
--
-- For every head at layer l and every head at layer l + 1, the adjusted Rand index between
-- their clusterings of the same query rows (same sample, point and query kind), averaged
-- over samples: 1 when the head above splits the tokens exactly as the head below, 0 when
-- no more alike than chance. cluster_transitions shows the flows of one sample. Reads one
-- analysis: the latest of the run with the given view.
--
-- Parameters:
--   $run_id = latest_run     the run [default: the latest run in the store]
--   $view: str = null        row view of the analysis; null: the run's latest analysis
--   $query_kind = 'x'        'x' or 'y'
-- Grain: layer, head, next_head.
-- Columns:
--   analysis_id, query_kind,
--   layer, head          a head at layer l
--   next_layer           l + 1
--   next_head            a head at layer l + 1
--   n_samples            samples compared
--   mean_ari             mean adjusted Rand index of the two clusterings
--   same_k_share         share of samples where both heads chose the same k
with
chosen as (
    select analysis_id,
    from analyses
    where run_id = $run_id and ($view is null or view = $view)
    order by created_at desc, analysis_id desc
    limit 1
),

tokens as (
    select c.analysis_id, c.layer, c.head, c.sample, c.point, c.best_k, c.label,
    from clusters as c
    join chosen using (analysis_id)
    where c.query_kind = $query_kind
),

-- Adjusted Rand index from the contingency table of each (head pair, sample).
cells as (
    select
        lo.analysis_id,
        lo.layer,
        lo.head,
        hi.head as next_head,
        lo.sample,
        lo.label as label_lo,
        hi.label as label_hi,
        lo.best_k = hi.best_k as same_k,
        count(*) as n,
    from tokens as lo
    join tokens as hi
        on hi.analysis_id = lo.analysis_id and hi.sample = lo.sample and hi.point = lo.point
        and hi.layer = lo.layer + 1
    group by all
),

pairs_both as (
    select analysis_id, layer, head, next_head, sample,
        bool_and(same_k) as same_k,
        sum(n * (n - 1) / 2) as same_both,
        sum(n) * (sum(n) - 1) / 2 as total,
    from cells
    group by all
),

pairs_lo as (
    select analysis_id, layer, head, next_head, sample, sum(n * (n - 1) / 2) as same_lo,
    from (
        select analysis_id, layer, head, next_head, sample, label_lo, sum(n) as n,
        from cells
        group by all
    )
    group by all
),

pairs_hi as (
    select analysis_id, layer, head, next_head, sample, sum(n * (n - 1) / 2) as same_hi,
    from (
        select analysis_id, layer, head, next_head, sample, label_hi, sum(n) as n,
        from cells
        group by all
    )
    group by all
),

ari as (
    select
        analysis_id,
        layer,
        head,
        next_head,
        sample,
        same_k,
        same_lo * same_hi / total as expected,
        (same_lo + same_hi) / 2 as maximum,
        -- identical trivial partitions (one cluster each, or all singletons) agree fully
        case
            when maximum = expected then 1.0
            else (same_both - expected) / (maximum - expected)
        end as ari,
    from pairs_both
    join pairs_lo using (analysis_id, layer, head, next_head, sample)
    join pairs_hi using (analysis_id, layer, head, next_head, sample)
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
from ari
group by analysis_id, layer, head, next_head
order by layer, head, next_head
