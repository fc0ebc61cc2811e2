-- compare_runs: two runs side by side, head by head: which heads changed.
--
-- Two checkpoints, two tasks, or two views of one run: each side is one analysis
-- ($analysis_a, $analysis_b; by default the latest of its run, of its view), its heads and
-- query kinds as head_fits has them (quality: mean best silhouette, 0 where none), and its
-- run's task, seed and training step. Heads rank by how much their quality changed (changed:
-- by at least $min_delta). A head present in one run only (models of other shapes) has nulls
-- on the other side and comes first.
--
-- Parameters:
--   $analysis_a = latest_analysis  the first analysis [default: the latest of $run_a, $view_a]
--   $analysis_b = latest_analysis  the second [default: the latest of $run_b, of $view_b]
--   $run_a = previous_run      the first run [default: the run before the latest]
--   $run_b = latest_run        the second run [default: the latest run in the store]
--   $view_a: str{raw,shared_keys,per_example} = null  run_a's row view; null: any view
--   $view_b: str{raw,shared_keys,per_example} = null  run_b's row view; null: any view
--   $min_delta: float[0..] = 0.1  change in quality that counts as changed
-- Grain: layer, head, query_kind.
-- Columns:
--   rank                 1 = the largest change in quality
--   layer, head, query_kind,
--   analysis_a, analysis_b  the analysis of each side
--   task_a, task_b       the task of each side's run
--   seed_a, seed_b       the prompt seed of each side's run
--   step_a, step_b       the checkpoint's training step of each side's run(s) (null where
--                        unknown)
--   quality_a, quality_b quality (head_fits) on each side
--   delta_quality        quality_b - quality_a
--   modal_k_a, modal_k_b modal_k (head_fits) on each side
--   modal_k_share_a, modal_k_share_b  modal_k_share (head_fits) on each side
--   mean_nmi_y_a, mean_nmi_y_b  mean_nmi_y (head_fits) on each side
--   mean_eta2_point_a, mean_eta2_point_b  mean_eta2_point (head_fits) on each side
--   changed              |delta_quality| >= $min_delta, or the head is in one run only
with
chosen as (
    select 'a' as side, $analysis_a as analysis_id,
    union all
    select 'b' as side, $analysis_b as analysis_id,
),

per_head as materialized (
    select c.side, h.*, r.task, r.seed, r.train_step,
    from head_fits as h
    join chosen as c using (analysis_id)
    join runs as r using (run_id)
    where h.analysis_id in ($analysis_a, $analysis_b)  -- redundant, but pushed down
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
        a.task as task_a,
        b.task as task_b,
        a.seed as seed_a,
        b.seed as seed_b,
        a.train_step as step_a,
        b.train_step as step_b,
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
    task_a,
    task_b,
    seed_a,
    seed_b,
    step_a,
    step_b,
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
