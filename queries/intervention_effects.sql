-- intervention_effects: what each head of a run carries under one intervention: a heads map.
--
-- head_effect_summary's row of $intervention_id for every layer x head of $run_id: the
-- accuracy and logit the model loses when the head is changed. run_interventions lists a
-- run's interventions, the latest of each method and target first. Without an intervention
-- (null, or one of another run), every head has one row, its effect columns null. Reads no
-- analysis. Each mean and late delta has its 95% interval: a paired bootstrap over prompts
-- (head_effect_summary; attnstore/stats.py).
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $intervention_id: str = null  the intervention; null: none
-- Grain: layer, head.
-- Columns:
--   run_id, layer, head, intervention_id, method, target,
--   resample_seed        seed of the resample permutation; null for other methods
--   n_points,
--   n_prompts            prompts replayed (each one a paired difference)
--   mean_base_accuracy   mean over points of base_accuracy (the unchanged model's)
--   mean_accuracy        mean over points of accuracy (with the head changed)
--   mean_delta_accuracy  mean over points of delta_accuracy
--   mean_delta_accuracy_lower, mean_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   late_delta_accuracy  mean over the last half of the points (n_points // 2 on) of
--                        delta_accuracy
--   late_delta_accuracy_lower, late_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   worst_delta_accuracy the most negative delta_accuracy of any point
--   mean_delta_logit     mean over points of delta_logit
--   mean_delta_logit_lower, mean_delta_logit_upper   its 95% interval (paired bootstrap
--                        over prompts)
--   late_delta_logit     mean over the last half of the points of delta_logit
--   late_delta_logit_lower, late_delta_logit_upper   its 95% interval (paired bootstrap
--                        over prompts)
--   total_kept_rows      knockout: query rows left whole, summed over points
with
heads as (
    select run_id, layer, head,
    from runs, range(n_layers) as l(layer), range(n_heads) as h(head)
    where run_id = $run_id
),

chosen as (
    select *,
    from head_effect_summary
    where intervention_id = $intervention_id
)

select
    h.run_id,
    h.layer,
    h.head,
    e.intervention_id,
    e.method,
    e.target,
    e.resample_seed,
    e.n_points,
    e.n_prompts,
    e.mean_base_accuracy,
    e.mean_accuracy,
    e.mean_delta_accuracy,
    e.mean_delta_accuracy_lower,
    e.mean_delta_accuracy_upper,
    e.late_delta_accuracy,
    e.late_delta_accuracy_lower,
    e.late_delta_accuracy_upper,
    e.worst_delta_accuracy,
    e.mean_delta_logit,
    e.mean_delta_logit_lower,
    e.mean_delta_logit_upper,
    e.late_delta_logit,
    e.late_delta_logit_lower,
    e.late_delta_logit_upper,
    e.total_kept_rows,
from heads as h
left join chosen as e using (run_id, layer, head)
order by h.layer, h.head
