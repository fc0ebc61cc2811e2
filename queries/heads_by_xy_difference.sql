-- heads_by_xy_difference: heads whose x-query and y-query rows cluster differently.
--
-- The x query and the y query of a point are two rows of one head; this compares how the two
-- kinds cluster: how well (quality, as in heads_by_cluster_quality) and how alike their
-- partitions of the same points are (adjusted Rand index, per sample: the shared macro
-- adjusted_rand_index). quality and modal_k are head_fits'. A head ranks high
-- when one kind clusters and the other does not, or when both cluster but split the points
-- differently: xy_difference = |quality_x - quality_y| + min(quality_x, quality_y) *
-- (1 - max(mean_ari_xy, 0)).
--
-- Parameters:
--   $analysis_id: str = null  one analysis of the run; null: every analysis (of $view)
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $view: str{raw,shared_keys,per_example} = null  row view; null: every view
--   $top: int[1..] = null      keep the first $top ranks of each analysis; null: all
-- Grain: analysis_id, layer, head.
-- Columns:
--   rank                 1 = most different within the analysis
--   analysis_id, view, layer, head,
--   n_samples            samples with both query kinds analysed
--   quality_x            quality of the x queries: mean best silhouette, 0 where none
--   quality_y            the same for the y queries
--   quality_gap          quality_x - quality_y
--   modal_k_x            modal_k of the x queries: the k they choose most often
--   modal_k_y            the same for the y queries
--   same_k_share         share of samples where the two clusterings compared chose the same k
--   mean_ari_xy          mean adjusted Rand index of the x and y labels of the same points
--                        (1: the same partition; 0: no more alike than chance)
--   xy_difference        the ranking score above
with
chosen as (
    select analysis_id,
    from analyses
    where run_id = $run_id and ($view is null or view = $view)
        and ($analysis_id is null or analysis_id = $analysis_id)
),

kinds as (
    select
        analysis_id,
        any_value(view) as view,
        layer,
        head,
        any_value(quality) filter (where query_kind = 'x') as quality_x,
        any_value(quality) filter (where query_kind = 'y') as quality_y,
        any_value(modal_k) filter (where query_kind = 'x') as modal_k_x,
        any_value(modal_k) filter (where query_kind = 'y') as modal_k_y,
    from head_fits
    join chosen using (analysis_id)
    group by analysis_id, layer, head
),

samples as (
    select x.analysis_id, x.layer, x.head, x.sample, x.best_k = y.best_k as same_k,
    from problem_fits as x
    join problem_fits as y using (analysis_id, layer, head, sample)
    join chosen using (analysis_id)
    where x.query_kind = 'x' and y.query_kind = 'y'
),

-- the x and y labels of the same points, one sample at a time
agreement as (
    select
        x.analysis_id,
        x.layer,
        x.head,
        x.sample,
        adjusted_rand_index(x.label, y.label) as ari_xy,
    from clusters as x
    join clusters as y using (analysis_id, layer, head, sample, point)
    join chosen using (analysis_id)
    where x.query_kind = 'x' and y.query_kind = 'y'
    group by x.analysis_id, x.layer, x.head, x.sample
),

per_head as (
    select
        s.analysis_id,
        s.layer,
        s.head,
        count(*) as n_samples,
        avg(s.same_k::int) as same_k_share,
        avg(a.ari_xy) as mean_ari_xy,
    from samples as s
    left join agreement as a using (analysis_id, layer, head, sample)
    group by s.analysis_id, s.layer, s.head
),

scored as (
    select
        k.*,
        h.n_samples,
        h.same_k_share,
        h.mean_ari_xy,
        k.quality_x - k.quality_y as quality_gap,
        abs(k.quality_x - k.quality_y)
            + least(k.quality_x, k.quality_y) * (1 - greatest(h.mean_ari_xy, 0))
            as xy_difference,
    from kinds as k
    join per_head as h using (analysis_id, layer, head)
),

ranked as (
    select
        *,
        row_number() over (
            partition by analysis_id order by rank_key(xy_difference) desc nulls last, layer, head
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
    xy_difference,
from ranked
where $top is null or rank <= $top
order by view, analysis_id, rank
