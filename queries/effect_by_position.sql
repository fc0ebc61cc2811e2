-- effect_by_position: where in the prompt a head matters: its effect at every point.
--
-- Per intervention of the run (attnstore intervene), head and point: the accuracy and
-- logit * y without and with the head changed, and the head's rank among the layer x head
-- changes at that point. Reads the shared view head_effects (no analysis needed), whose
-- columns these are. Beside them, the model's accuracy at the point from the run's stored
-- predictions (point_accuracy); a run with no intervention (of $method, $target) yet has one
-- row per point, its intervention columns null. Each delta has its 95% interval over prompts
-- from its standard error (head_effects: mean ± 1.96 sd / sqrt(n); attnstore/stats.py).
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $method: str{zero,mean,resample,knockout} = null  one method; null: every method
--   $target: str = null        one target ('z' or a knockout key class); null: every target
--   $layer: int[0..] = null    one layer; null: every layer
--   $head: int[0..] = null     one head; null: every head
-- Grain: intervention_id, layer, head, point.
-- Columns:
--   intervention_id, method, target, layer, head, point,
--   model_accuracy       share of the model's predictions that are right
--   rank_at_point        1 = the head whose change costs the most accuracy at this point
--   base_accuracy        share of prompts predicted right, unchanged model
--   accuracy             the same with the head changed
--   delta_accuracy       accuracy - base_accuracy (share of prompts)
--   delta_accuracy_lower, delta_accuracy_upper   its 95% interval over prompts (standard
--                        error)
--   delta_logit          logit - base_logit
--   delta_logit_lower, delta_logit_upper   its 95% interval over prompts (standard error)
--   kept_rows            knockout: query rows at the point left whole
with
points as (
    select point, model_accuracy,
    from point_accuracy
    where run_id = $run_id
),

changed as (
    select
        intervention_id,
        method,
        target,
        layer,
        head,
        point,
        base_accuracy,
        accuracy,
        delta_accuracy,
        delta_accuracy_lower,
        delta_accuracy_upper,
        delta_logit,
        delta_logit_lower,
        delta_logit_upper,
        kept_rows,
        rank() over (partition by intervention_id, point order by rank_key(delta_accuracy))
            as rank_at_point,
    from head_effects
    where run_id = $run_id
        and ($method is null or method = $method)
        and ($target is null or target = $target)
)

select
    c.intervention_id,
    c.method,
    c.target,
    c.layer,
    c.head,
    p.point,
    p.model_accuracy,
    c.rank_at_point,
    c.base_accuracy,
    c.accuracy,
    c.delta_accuracy,
    c.delta_accuracy_lower,
    c.delta_accuracy_upper,
    c.delta_logit,
    c.delta_logit_lower,
    c.delta_logit_upper,
    c.kept_rows,
from points as p
left join changed as c
    on c.point = p.point
    and ($layer is null or c.layer = $layer)
    and ($head is null or c.head = $head)
order by c.method, c.target, c.intervention_id, c.layer, c.head, p.point
