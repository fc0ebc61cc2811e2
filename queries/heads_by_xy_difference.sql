-- heads_by_xy_difference: heads whose x-query and y-query rows cluster differently.
--
-- The x query and the y query of a point are two rows of one head; this compares how the two
-- kinds cluster: how well (quality, as in heads_by_cluster_quality) and how alike their
-- partitions of the same points are (adjusted Rand index, per sample). A head ranks high
-- when one kind clusters and the other does not, or when both cluster but split the points
-- differently: difference = |quality_x - quality_y| + min(quality_x, quality_y) *
-- (1 - max(mean_ari_xy, 0)).
--
-- Parameters:
--   $run_id = latest_run     the run [default: the latest run in the store]
--   $view: str = null        row view: raw, shared_keys or per_example; null: every view
--   $top: int = null         keep the first $top ranks of each analysis; null: all
-- Grain: analysis_id, layer, head.
-- Columns:
--   rank                 1 = most different within the analysis
--   analysis_id, view, layer, head,
--   n_samples            samples with both query kinds analysed
--   quality_x            mean best silhouette of the x queries, 0 where none
--   quality_y            the same for the y queries
--   quality_gap          quality_x - quality_y
--   modal_k_x            the k the x queries choose most often
--   modal_k_y            the same for the y queries
--   same_k_share         share of samples where both kinds choose the same k
--   mean_ari_xy          mean adjusted Rand index of the x and y labels of the same points
--                        (1: the same partition; 0: no more alike than chance)
--   difference           the ranking score above
with
chosen as (
    select analysis_id, view,
    from analyses
    where run_id = $run_id and ($view is null or view = $view)
),

problems as (
    select f.analysis_id, c.view, f.layer, f.head, f.sample, f.query_kind, f.best_k,
        coalesce(nullif(f.best_silhouette, 'nan'), 0) as quality,  -- NaN: no clustering
    from fits as f
    join chosen as c using (analysis_id)
),

pairs as (
    select
        x.analysis_id,
        x.view,
        x.layer,
        x.head,
        x.sample,
        x.quality as quality_x,
        y.quality as quality_y,
        x.best_k as k_x,
        y.best_k as k_y,
    from problems as x
    join problems as y using (analysis_id, layer, head, sample)
    where x.query_kind = 'x' and y.query_kind = 'y'
),

labels as (
    select x.analysis_id, x.layer, x.head, x.sample, x.label as label_x, y.label as label_y,
    from clusters as x
    join clusters as y using (analysis_id, layer, head, sample, point)
    join chosen using (analysis_id)
    where x.query_kind = 'x' and y.query_kind = 'y'
),

-- Adjusted Rand index from the contingency table of each sample's two labellings.
cells as (
    select analysis_id, layer, head, sample, label_x, label_y, count(*) as n,
    from labels
    group by all
),

pairs_both as (
    select analysis_id, layer, head, sample,
        sum(n * (n - 1) / 2) as same_both,
        sum(n) * (sum(n) - 1) / 2 as total,
    from cells
    group by all
),

pairs_x as (
    select analysis_id, layer, head, sample, sum(n * (n - 1) / 2) as same_x,
    from (
        select analysis_id, layer, head, sample, label_x, sum(n) as n,
        from cells
        group by all
    )
    group by all
),

pairs_y as (
    select analysis_id, layer, head, sample, sum(n * (n - 1) / 2) as same_y,
    from (
        select analysis_id, layer, head, sample, label_y, sum(n) as n,
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
        sample,
        same_x * same_y / total as expected,
        (same_x + same_y) / 2 as maximum,
        -- identical trivial partitions (one cluster each, or all singletons) agree fully
        case
            when maximum = expected then 1.0
            else (same_both - expected) / (maximum - expected)
        end as ari_xy,
    from pairs_both
    join pairs_x using (analysis_id, layer, head, sample)
    join pairs_y using (analysis_id, layer, head, sample)
),

k_counts as (
    select analysis_id, layer, head, query_kind, best_k, count(*) as n,
    from problems
    where best_k >= 2
    group by all
),

modal as (
    select analysis_id, layer, head, query_kind, best_k as modal_k,
    from k_counts
    qualify row_number() over (
        partition by analysis_id, layer, head, query_kind order by n desc, best_k
    ) = 1
),

per_head as (
    select
        p.analysis_id,
        any_value(p.view) as view,
        p.layer,
        p.head,
        count(*) as n_samples,
        avg(p.quality_x) as quality_x,
        avg(p.quality_y) as quality_y,
        avg((p.k_x = p.k_y)::int) as same_k_share,
        avg(a.ari_xy) as mean_ari_xy,
    from pairs as p
    left join ari as a using (analysis_id, layer, head, sample)
    group by p.analysis_id, p.layer, p.head
),

scored as (
    select
        h.*,
        h.quality_x - h.quality_y as quality_gap,
        mx.modal_k as modal_k_x,
        my.modal_k as modal_k_y,
        abs(h.quality_x - h.quality_y)
            + least(h.quality_x, h.quality_y) * (1 - greatest(h.mean_ari_xy, 0))
            as difference,
    from per_head as h
    left join modal as mx
        on mx.analysis_id = h.analysis_id and mx.layer = h.layer and mx.head = h.head
        and mx.query_kind = 'x'
    left join modal as my
        on my.analysis_id = h.analysis_id and my.layer = h.layer and my.head = h.head
        and my.query_kind = 'y'
),

ranked as (
    select
        *,
        row_number() over (
            partition by analysis_id order by difference desc nulls last, layer, head
        ) as rank,
    from scored
)

select
    rank,
    analysis_id,
    view,
    layer,
    head,
    n_samples,
    quality_x,
    quality_y,
    quality_gap,
    modal_k_x,
    modal_k_y,
    same_k_share,
    mean_ari_xy,
    difference,
from ranked
where $top is null or rank <= $top
order by view, analysis_id, rank
