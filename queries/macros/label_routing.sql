-- label_routing: how a head's mass on y tokens follows positive labels, over a group's rows.
--
-- An aggregate, as adjusted_rand_index is, over rows of label_routing_rows (a head's query
-- rows from a first point on), returning the label routing metrics as one struct:
--     select layer, head, unnest(label_routing(mass_y, mass_y_pos, positive_share_seen))
--     from label_routing_rows where ... group by layer, head
-- The one definition of these metrics (head_label_routing, heads_by_label_routing,
-- head_metric_values and heads_by_effect read them from here):
--   mean_mass_y          avg(mass_y), the mean attention mass of a row on y tokens
--   positive_mass_share  sum(mass_y_pos) / sum(mass_y): the share of the y-token mass on the y
--                        tokens of positive labels, pooled over the rows
--   chance_share         sum(mass_y * positive_share_seen) / sum(mass_y): the same share if
--                        each row spread its y mass evenly over the labels it sees
--   lift                 positive_mass_share / chance_share (1: chance)
--   excess_mass          avg(mass_y_pos - mass_y * positive_share_seen): the mass per row on
--                        positive labels beyond that chance level
--
-- Arguments:
--   mass_y, mass_y_pos   a row's attention mass on y tokens, and on those of positive labels
--   positive_share_seen  the share of positive labels among those the row sees
-- Returns: a STRUCT of those five DOUBLEs (the shares and lift null where no row has y mass).
create macro label_routing(mass_y, mass_y_pos, positive_share_seen) as {
    'mean_mass_y': avg(mass_y),
    'positive_mass_share': sum(mass_y_pos) / nullif(sum(mass_y), 0),
    'chance_share': sum(mass_y * positive_share_seen) / nullif(sum(mass_y), 0),
    'lift': (sum(mass_y_pos) / nullif(sum(mass_y), 0))
        / nullif(sum(mass_y * positive_share_seen) / nullif(sum(mass_y), 0), 0),
    'excess_mass': avg(mass_y_pos - mass_y * positive_share_seen),
}
