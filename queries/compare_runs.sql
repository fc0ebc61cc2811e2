-- compare_runs: two runs side by side, head by head: which heads changed.
--
-- Two checkpoints, two tasks, or two views of one run: each side is one analysis
-- ($analysis_a, $analysis_b; by default the latest of its run, of its view), its heads and
-- query kinds as head_fits has them (quality: mean best silhouette, 0 where none), and its
-- run's task, seed and training step. Heads rank by how much their quality changed. A head
-- present in one run only (models of other shapes) has nulls on the other side and comes
-- first.
-- Decided on the interval: delta_quality has a 95% interval from the standard errors of the
-- two means over samples, sqrt(se_a^2 + se_b^2) (the two sides taken as independent: for two
-- analyses of the same prompts it is conservative), and a head changed only when that whole
-- interval lies beyond $min_delta (at least $min_delta above 0, or as far below), not when
-- the estimate alone does; with one sample on a side there is no interval, and no change is
-- called. The training seed of each side is named: another training seed is another model,
-- whose head indices need not match these.
--
-- Parameters:
--   $analysis_a = latest_analysis  the first analysis [default: the latest of $run_a, $view_a]
--   $analysis_b = latest_analysis  the second [default: the latest of $run_b, of $view_b]
--   $run_a = previous_run      the first run [default: the run before the latest]
--   $run_b = latest_run        the second run [default: the latest run in the store]
--   $view_a: str{raw,shared_keys,per_example} = null  run_a's row view; null: any view
--   $view_b: str{raw,shared_keys,per_example} = null  run_b's row view; null: any view
--   $min_delta: float[0..] = 0.1  change in quality that counts as changed: the whole
--                              interval of delta_quality beyond it
-- Grain: layer, head, query_kind.
-- Columns:
--   rank                 1 = the largest change in quality
--   layer, head, query_kind,
--   analysis_a, analysis_b  the analysis of each side
--   task_a, task_b       the task of each side's run
--   seed_a, seed_b       the prompt seed of each side's run
--   step_a, step_b       the checkpoint's training step of each side's run(s) (null where
--                        unknown)
--   train_seed_a, train_seed_b  the checkpoint's training seed of each side's run (null where
--                        unknown)
--   quality_a, quality_b quality (head_fits) on each side
--   delta_quality        quality_b - quality_a
--   delta_quality_lower, delta_quality_upper  its 95% interval (standard errors over samples);
--                        null where a side has one sample
--   modal_k_a, modal_k_b modal_k (head_fits) on each side
--   modal_k_share_a, modal_k_share_b  modal_k_share (head_fits) on each side
--   mean_nmi_y_a, mean_nmi_y_b  mean_nmi_y (head_fits) on each side
--   mean_eta2_point_a, mean_eta2_point_b  mean_eta2_point (head_fits) on each side
--   changed              the interval of delta_quality lies wholly at or beyond $min_delta
--                        from 0 (delta_quality_lower >= $min_delta or delta_quality_upper <=
--                        -$min_delta), or the head is in one run only
with
chosen as (
    select 'a' as side, $analysis_a as analysis_id,
    union all
    select 'b' as side, $analysis_b as analysis_id,
),

-- the standard error of quality (a mean over samples) per analysis and head
quality_errors as (
    select
        analysis_id,
        layer,
        head,
        query_kind,
        stddev_samp(quality) / sqrt(count(quality)) as quality_se,
    from problem_fits
    where analysis_id in ($analysis_a, $analysis_b)
    group by analysis_id, layer, head, query_kind
),

per_head as materialized (
    select c.side, h.*, e.quality_se, r.task, r.seed, r.train_seed, r.train_step,
    from head_fits as h
    join chosen as c using (analysis_id)
    join runs as r using (run_id)
    left join quality_errors as e using (analysis_id, layer, head, query_kind)
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
        a.train_seed as train_seed_a,
        b.train_seed as train_seed_b,
        a.quality as quality_a,
        b.quality as quality_b,
        b.quality - a.quality as delta_quality,
        se_interval(
            b.quality - a.quality, sqrt(a.quality_se ^ 2 + b.quality_se ^ 2)
        ) as bounds,
        a.modal_k as modal_k_a,
        b.modal_k as modal_k_b,
        a.modal_k_share as modal_k_share_a,
        b.modal_k_share as modal_k_share_b,
        a.mean_nmi_y as mean_nmi_y_a,
        b.mean_nmi_y as mean_nmi_y_b,
        a.mean_eta2_point as mean_eta2_point_a,
        b.mean_eta2_point as mean_eta2_point_b,
        case
            when a.layer is null or b.layer is null then true
            else coalesce(
                bounds['lower'] >= $min_delta or bounds['upper'] <= -$min_delta, false
            )
        end as changed,
    from side_a as a
    full outer join side_b as b using (layer, head, query_kind)
)

select
    row_number() over (
        order by rank_key(abs(delta_quality)) desc nulls first, layer, head, query_kind
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
    train_seed_a,
    train_seed_b,
    quality_a,
    quality_b,
    delta_quality,
    bounds.lower as delta_quality_lower,
    bounds.upper as delta_quality_upper,
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
