-- compare_runs: two runs side by side, head by head: which heads changed.
--
-- Two checkpoints, two tasks, or two views of one run: each side is the latest analysis of
-- its run with the given view, summarised per head and query kind as in
-- heads_by_cluster_quality (quality: mean best silhouette, 0 where none). Heads rank by how
-- much their quality changed (changed: by at least $min_delta). A head present in one run
-- only (models of other shapes) has nulls on the other side and comes first.
--
-- Parameters:
--   $run_a = previous_run    the first run [default: the run before the latest]
--   $run_b = latest_run      the second run [default: the latest run in the store]
--   $view_a: str = null      row view of run_a's analysis; null: its latest analysis
--   $view_b: str = null      row view of run_b's analysis; null: its latest analysis
--   $min_delta = 0.1         change in quality that counts as changed
-- Grain: layer, head, query_kind.
-- Columns:
--   rank                 1 = the largest change in quality
--   layer, head, query_kind,
--   analysis_a, analysis_b
--                        the analyses compared
--   quality_a, quality_b, delta_quality (b - a)
--   modal_k_a, modal_k_b, modal_k_share_a, modal_k_share_b
--   mean_nmi_y_a, mean_nmi_y_b
--   mean_eta2_point_a, mean_eta2_point_b
--   changed              |delta_quality| >= $min_delta, or the head is in one run only
with
analysis_a as (
    select analysis_id,
    from analyses
    where run_id = $run_a and ($view_a is null or view = $view_a)
    order by created_at desc, analysis_id desc
    limit 1
),

analysis_b as (
    select analysis_id,
    from analyses
    where run_id = $run_b and ($view_b is null or view = $view_b)
    order by created_at desc, analysis_id desc
    limit 1
),

problems as (
    select 'a' as side, f.*,
    from fits as f
    join analysis_a using (analysis_id)
    union all
    select 'b' as side, f.*,
    from fits as f
    join analysis_b using (analysis_id)
),

k_counts as (
    select side, layer, head, query_kind, best_k, count(*) as n,
    from problems
    where best_k >= 2
    group by all
),

modal as (
    select side, layer, head, query_kind, best_k as modal_k, n as modal_n,
    from k_counts
    qualify row_number() over (
        partition by side, layer, head, query_kind order by n desc, best_k
    ) = 1
),

per_head as (
    select
        p.side,
        p.layer,
        p.head,
        p.query_kind,
        any_value(p.analysis_id) as analysis_id,
        -- the analysis writes NaN where a problem has no clustering: read it as null
        avg(coalesce(nullif(p.best_silhouette, 'nan'), 0)) as quality,
        any_value(m.modal_k) as modal_k,
        coalesce(any_value(m.modal_n), 0) / count(*) as modal_k_share,
        avg(nullif(p.nmi_y, 'nan')) as mean_nmi_y,
        avg(nullif(p.eta2_point, 'nan')) as mean_eta2_point,
    from problems as p
    left join modal as m using (side, layer, head, query_kind)
    group by p.side, p.layer, p.head, p.query_kind
),

side_a as (select * from per_head where side = 'a'),

side_b as (select * from per_head where side = 'b'),

joined as (
    select
        coalesce(a.layer, b.layer) as layer,
        coalesce(a.head, b.head) as head,
        coalesce(a.query_kind, b.query_kind) as query_kind,
        a.analysis_id as analysis_a,
        b.analysis_id as analysis_b,
        a.quality as quality_a,
        b.quality as quality_b,
        b.quality - a.quality as delta_quality,
        a.modal_k as modal_k_a,
        b.modal_k as modal_k_b,
        a.modal_k_share as modal_k_share_a,
        b.modal_k_share as modal_k_share_b,
        a.mean_nmi_y as mean_nmi_y_a,
        b.mean_nmi_y as mean_nmi_y_b,
        a.mean_eta2_point as mean_eta2_point_a,
        b.mean_eta2_point as mean_eta2_point_b,
        coalesce(abs(delta_quality) >= $min_delta, true) as changed,
    from side_a as a
    full outer join side_b as b using (layer, head, query_kind)
)

select
    row_number() over (
        order by abs(delta_quality) desc nulls first, layer, head, query_kind
    ) as rank,
    layer,
    head,
    query_kind,
    analysis_a,
    analysis_b,
    quality_a,
    quality_b,
    delta_quality,
    modal_k_a,
    modal_k_b,
    modal_k_share_a,
    modal_k_share_b,
    mean_nmi_y_a,
    mean_nmi_y_b,
    mean_eta2_point_a,
    mean_eta2_point_b,
    changed,
from joined
order by rank
