-- label_routing_rows: per attention query row, its y-token mass and the positive labels seen.
--
-- A query row at point i sees the labels of the earlier points (and, for a y query, its
-- own). If a head spread its mass on y tokens evenly over them, the share of that mass on
-- positive labels would be the share of positive labels it sees (positive_share_seen).
-- heads_by_label_routing and head_metric_values aggregate these rows from a first point on.
-- An x query at point 0 sees no label and has no row. Reads the attention table's mass
-- columns and the inputs' labels only: no analysis needed.
--
-- Parameters: none.
-- Grain: run_id, sample, point, layer, head, query_kind.
-- Columns:
--   run_id, sample, point, layer, head, query_kind, n_points, mass_y, mass_y_pos,
--   positive_share_seen  share of positive labels among those the row sees
with
labels_seen as (
    select
        run_id,
        sample,
        point,
        coalesce(
            sum((y > 0)::int) over (
                partition by run_id, sample order by point
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as positives_before,
        positives_before + (y > 0)::int as positives_upto,
    from inputs
)

select
    a.run_id,
    a.sample,
    a.point,
    a.layer,
    a.head,
    a.query_kind,
    r.n_points,
    a.mass_y,
    a.mass_y_pos,
    -- an x query at point i sees the labels of points 0..i-1, a y query also its own
    case
        when a.query_kind = 'x' then l.positives_before / a.point
        else l.positives_upto / (a.point + 1)
    end as positive_share_seen,
from attention as a
join runs as r using (run_id)
join labels_seen as l using (run_id, sample, point)
where a.query_kind = 'y' or a.point >= 1  -- an x query at point 0 sees no label
