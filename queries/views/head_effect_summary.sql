-- head_effect_summary: per intervention and head, the accuracy and logit the head carries.
--
-- head_effects averaged over the points of the prompt, and over its last half (points from
-- n_points // 2 on: where an in-context learner has seen enough examples to be right).
--
-- Parameters: none.
-- Grain: intervention_id, layer, head.
-- Columns:
--   intervention_id, run_id, method, target,
--   resample_seed        seed of the resample permutation; null for other methods
--   layer, head, n_points,
--   mean_base_accuracy   mean over points of base_accuracy (the unchanged model's)
--   mean_accuracy        mean over points of accuracy (with the head changed)
--   mean_delta_accuracy  mean over points of delta_accuracy
--   late_delta_accuracy  mean over the last half of the points (n_points // 2 on) of
--                        delta_accuracy
--   worst_delta_accuracy the most negative delta_accuracy of any point
--   mean_delta_logit     mean over points of delta_logit
--   late_delta_logit     mean over the last half of the points of delta_logit
--   total_kept_rows      knockout: query rows left whole, summed over points
with
per_point as (
    select
        e.*,
        r.n_points,
        e.point >= r.n_points // 2 as late,
    from head_effects as e
    join runs as r using (run_id)
)

select
    intervention_id,
    run_id,
    method,
    target,
    resample_seed,
    layer,
    head,
    any_value(n_points) as n_points,
    avg(base_accuracy) as mean_base_accuracy,
    avg(accuracy) as mean_accuracy,
    avg(delta_accuracy) as mean_delta_accuracy,
    avg(delta_accuracy) filter (where late) as late_delta_accuracy,
    min(delta_accuracy) as worst_delta_accuracy,
    avg(delta_logit) as mean_delta_logit,
    avg(delta_logit) filter (where late) as late_delta_logit,
    sum(kept_rows)::bigint as total_kept_rows,
from per_point
group by intervention_id, run_id, method, target, resample_seed, layer, head
