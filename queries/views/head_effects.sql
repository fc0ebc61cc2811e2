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
--   intervention_id, run_id,
--   method               zero, mean, resample or knockout
--   target               'z' (zero, mean, resample) or the knockout's key class
--   seed                 the resample permutation's seed (null for other methods)
--   layer, head, point,
--   base_accuracy        share of prompts predicted right at the point, unchanged model
--   accuracy             the same with the head changed
--   delta_accuracy       accuracy - base_accuracy (negative: the head carries accuracy)
--   base_logit           mean logit * y at the point, unchanged model
--   logit                the same with the head changed
--   delta_logit          logit - base_logit
--   kept_rows            knockout: query rows at the point kept whole (all mass removed)
select
    i.intervention_id,
    i.run_id,
    i.method,
    i.target,
    i.seed,
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
