-- head_effects: what changing one head does to the model, per intervention, head and point.
--
-- prompt_effects (attnstore intervene: one row per prompt) averaged over the run's prompts at
-- each point, next to its intervention's run, method and target, so that SQL joins on run_id,
-- layer and head. Accuracy is the share of prompts predicted right at the point; logit is the
-- mean of logit * y there (positive: confidently right). Each delta has a 95% interval from
-- its standard error over prompts (normal_interval: the mean of the paired per-prompt
-- differences ± 1.96 sd / sqrt(n); null for one prompt). A set of heads changed together
-- (--heads) has layer and head -1. An intervention written before per-prompt outcomes (table
-- effects only) stops every read with a message naming 'attnstore intervene --overwrite'.
-- See attnstore/interventions.py for the methods and key classes.
--
-- Parameters: none.
-- Grain: intervention_id, layer, head, point.
-- Columns:
--   intervention_id, run_id, method, target,
--   resample_seed        seed of the resample permutation; null for other methods
--   layer, head, point,
--   n_prompts            prompts replayed (each one a paired difference)
--   base_accuracy        share of prompts predicted right, unchanged model
--   accuracy             the same with the head changed
--   delta_accuracy       accuracy - base_accuracy (share of prompts)
--   delta_accuracy_lower, delta_accuracy_upper   its 95% interval over prompts (standard
--                        error)
--   base_logit           mean over prompts of logit * y, unchanged model
--   logit                the same with the head changed
--   delta_logit          logit - base_logit
--   delta_logit_lower, delta_logit_upper   its 95% interval over prompts (standard error)
--   kept_rows            knockout: query rows at the point left whole
-- (a negative delta_accuracy: the head carries accuracy)
with
legacy as (
    select
        error(
            'intervention ' || i.intervention_id || ' (' || i.method || ' ' || i.target
            || ', run ' || i.run_id || ') was written before per-prompt outcomes: it has '
            || 'no intervals; measure it again with attnstore intervene --run ' || i.run_id
            || ' --method ' || i.method
            || case when i.method = 'knockout' then ' --target ' || i.target else '' end
            || ' --overwrite'
        ) as refused,
    from interventions as i
    where i.intervention_id not in (select intervention_id from prompt_effects)
),

per_point as (
    select
        intervention_id,
        layer,
        head,
        point,
        count(*) as n_prompts,
        avg(base_correct::int) as base_accuracy,
        avg(correct::int) as accuracy,
        normal_interval(correct::int - base_correct::int) as delta_accuracy_interval,
        avg(base_signed_logit::double) as base_logit,
        avg(signed_logit::double) as logit,
        normal_interval(signed_logit::double - base_signed_logit) as delta_logit_interval,
        sum(kept_rows)::integer as kept_rows,
    from prompt_effects
    group by intervention_id, layer, head, point
)

select
    i.intervention_id,
    i.run_id,
    i.method,
    i.target,
    i.seed as resample_seed,
    e.layer,
    e.head,
    e.point,
    e.n_prompts,
    e.base_accuracy,
    e.accuracy,
    e.accuracy - e.base_accuracy as delta_accuracy,
    e.delta_accuracy_interval.lower as delta_accuracy_lower,
    e.delta_accuracy_interval.upper as delta_accuracy_upper,
    e.base_logit,
    e.logit,
    e.logit - e.base_logit as delta_logit,
    e.delta_logit_interval.lower as delta_logit_lower,
    e.delta_logit_interval.upper as delta_logit_upper,
    e.kept_rows,
from per_point as e
join interventions as i using (intervention_id)
where (select count(refused) from legacy) = 0  -- raises the refusal, if any
