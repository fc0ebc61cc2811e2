-- head_label_routing: per run, head and query kind, how its y-token mass follows positive labels.
--
-- The macro label_routing (where each metric is defined) over the rows of label_routing_rows
-- from point n_points // 2 on, the last half of the prompt: heads_by_label_routing's default
-- min_point. head_metric_values and heads_by_effect read it; heads_by_label_routing computes
-- the same with the macro from the first point it is given. Reads the attention table's mass
-- columns and the inputs' labels only: no analysis needed.
--
-- Parameters: none.
-- Grain: run_id, layer, head, query_kind.
-- Columns:
--   run_id, layer, head, query_kind,
--   n_rows               query rows counted (samples x points from n_points // 2 on)
--   mean_mass_y          mean attention mass on y tokens (labels) of the query rows counted
--   positive_mass_share  share of the y-token mass on the y tokens of positive labels, pooled
--                        over the query rows counted
--   chance_share         the same share if each row spread its y mass evenly over the labels
--                        it sees
--   lift                 positive_mass_share / chance_share (1: chance)
--   excess_mass          mean over the query rows counted of mass_y_pos - mass_y *
--                        positive_share_seen: the mass on positive labels beyond chance
with
per_head as (
    select
        run_id,
        layer,
        head,
        query_kind,
        count(*) as n_rows,
        label_routing(mass_y, mass_y_pos, positive_share_seen) as routing,
    from label_routing_rows
    where point >= n_points // 2
    group by run_id, layer, head, query_kind
)

select
    run_id,
    layer,
    head,
    query_kind,
    n_rows,
    routing.mean_mass_y,
    routing.positive_mass_share,
    routing.chance_share,
    routing.lift,
    routing.excess_mass,
from per_head
