-- heads_by_label_routing: heads that route queries to the y tokens of positive examples.
--
-- A query row at point i sees the labels of the earlier points (and, for a y query, its
-- own). If a head spread its mass on y tokens evenly over them, the share of that mass on
-- positive labels would be the share of positive labels it sees (chance_share). Heads rank by
-- excess_mass: the mean attention mass, per query row, on positive y tokens beyond that
-- chance level, over the rows of label_routing_rows from $min_point on. Each column is the
-- shared macro label_routing's (head_label_routing holds them at the default min_point, for
-- every run). Reads the attention table's mass columns only: no analysis needed.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $query_kind: str{x,y} = 'x'  the query rows: 'x' or 'y'
--   $min_point: int[0..] = null  first point whose query rows count; null: n_points // 2
--   $top: int[1..] = null      keep the first $top ranks; null: all
-- Grain: layer, head.
-- Columns:
--   rank                 1 = the most excess mass on positive examples
--   run_id, layer, head, query_kind,
--   n_rows               query rows counted (samples x points from min_point on)
--   mean_mass_y          mean attention mass on y tokens (labels) of the query rows counted
--   positive_mass_share  share of the y-token mass on the y tokens of positive labels, pooled
--                        over the query rows counted
--   chance_share         the same share if each row spread its y mass evenly over the labels
--                        it sees
--   lift                 positive_mass_share / chance_share (1: chance)
--   excess_mass          mean over the query rows counted of mass_y_pos - mass_y *
--                        positive_share_seen: the mass on positive labels beyond chance
with
-- the query rows of label_routing_rows (an x query at point 0 sees no label: none there)
per_head as (
    select
        layer,
        head,
        any_value(query_kind) as query_kind,
        count(*) as n_rows,
        label_routing(mass_y, mass_y_pos, positive_share_seen) as routing,
    from label_routing_rows
    where run_id = $run_id and query_kind = $query_kind
        and point >= coalesce($min_point, n_points // 2)
    group by layer, head
),

ranked as (
    select
        *,
        row_number() over (
            order by rank_key(routing.excess_mass) desc nulls last, layer, head
        ) as rank,
    from per_head
)

select
    rank,
    $run_id as run_id,
    layer,
    head,
    query_kind,
    n_rows,
    routing.mean_mass_y,
    routing.positive_mass_share,
    routing.chance_share,
    routing.lift,
    routing.excess_mass,
from ranked
where $top is null or rank <= $top
order by rank
