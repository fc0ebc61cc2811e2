-- effect_by_position: where in the prompt a head matters: its effect at every point.
--
-- Per intervention of the run (attnstore intervene), head and point: the accuracy and
-- logit * y without and with the head changed, and the head's rank among the layer x head
-- changes at that point. Reads the effects and interventions tables (no analysis needed),
-- with the columns of head_effects. Beside them, the accuracy of the run's stored
-- predictions at the point; a run with no intervention (of $method, $target) yet has one row
-- per point, its intervention columns null.
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
--   stored_accuracy      share of the run's stored predictions right at the point
--   rank_at_point        1 = the head whose change costs the most accuracy at this point
--   base_accuracy        share of prompts predicted right at the point, unchanged model
--   accuracy             the same with the head changed
--   delta_accuracy       accuracy - base_accuracy
--   delta_logit          change of the mean logit * y at the point
--   kept_rows            knockout: query rows at the point kept whole (all mass removed)
with
points as (
    select point, avg(correct::int) as stored_accuracy,
    from predictions
    where run_id = $run_id
    group by point
),

changed as (
    select
        i.intervention_id,
        i.method,
        i.target,
        e.layer,
        e.head,
        e.point,
        e.base_accuracy,
        e.accuracy,
        e.delta_accuracy,
        e.delta_logit,
        e.kept_rows,
        rank() over (
            partition by i.intervention_id, e.point order by e.delta_accuracy
        ) as rank_at_point,
    from effects as e
    join interventions as i using (intervention_id)
    where i.run_id = $run_id
        and ($method is null or i.method = $method)
        and ($target is null or i.target = $target)
)

select
    c.intervention_id,
    c.method,
    c.target,
    c.layer,
    c.head,
    p.point,
    p.stored_accuracy,
    c.rank_at_point,
    c.base_accuracy,
    c.accuracy,
    c.delta_accuracy,
    c.delta_logit,
    c.kept_rows,
from points as p
left join changed as c
    on c.point = p.point
    and ($layer is null or c.layer = $layer)
    and ($head is null or c.head = $head)
order by c.method, c.target, c.intervention_id, c.layer, c.head, p.point
