-- compare_runs: two runs side by side, head by head: which heads changed.
--
-- Two checkpoints, two tasks, or two views of one run: each side is the latest analysis of
-- its run with the given view (latest_analyses), its heads and query kinds as head_fits has
-- them (quality: mean best silhouette, 0 where none). Heads rank by how
-- much their quality changed (changed: by at least $min_delta). A head present in one run
-- only (models of other shapes) has nulls on the other side and comes first.
--
-- Parameters:
--   $run_a = previous_run      the first run [default: the run before the latest]
--   $run_b = latest_run        the second run [default: the latest run in the store]
--   $view_a: str{raw,shared_keys,per_example} = null  run_a's row view; null: latest
--   $view_b: str{raw,shared_keys,per_example} = null  run_b's row view; null: latest
--   $min_delta: float[0..] = 0.1  change in quality that counts as changed
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
chosen as (
    select 'a' as side, analysis_id,
    from latest_analyses
    where run_id = $run_a
        and (($view_a is null and latest_of_run) or (view = $view_a and latest_of_view))
    union all
    select 'b' as side, analysis_id,
    from latest_analyses
    where run_id = $run_b
        and (($view_b is null and latest_of_run) or (view = $view_b and latest_of_view))
),

per_head as materialized (
    select c.side, h.*,
    from head_fits as h
    join chosen as c using (analysis_id)
    where h.run_id in ($run_a, $run_b)  -- redundant, but pushed down: only these runs' fits
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
