-- head_effects: what changing one head does to the model, per intervention, head and point.
--
-- The effects table (attnstore intervene) next to its intervention's run, method and
-- target, so that SQL joins on run_id, layer and head. Accuracy is the share of the run's
-- prompts predicted right at the point; logit is the mean of logit * y there (positive:
-- confidently right). See attnstore/interventions.py for the methods and key classes.
--
-- Parameters: none.
-- Grain: intervention_id, layer, head, point.
-- Columns:
--   intervention_id, run_id, method, target,
--   resample_seed        seed of the resample permutation; null for other methods
--   layer, head, point,
--   base_accuracy        share of prompts predicted right, unchanged model
--   accuracy             the same with the head changed
--   delta_accuracy       accuracy - base_accuracy (share of prompts)
--   base_logit           mean over prompts of logit * y, unchanged model
--   logit                the same with the head changed
--   delta_logit          logit - base_logit
--   kept_rows            knockout: query rows at the point left whole
-- (a negative delta_accuracy: the head carries accuracy)
select
    i.intervention_id,
    i.run_id,
    i.method,
    i.target,
    i.seed as resample_seed,
    e.layer,
    e.head,
    e.point,
    e.base_accuracy,
    e.accuracy,
    e.delta_accuracy,
    e.base_logit,
    e.logit,
    e.delta_logit,
    e.kept_rows,
from effects as e
join interventions as i using (intervention_id)
