-- adjusted_rand_index: how alike two partitions of the same items are, beyond chance.
--
-- An aggregate, like corr(x, y): over the rows of a group, one row per item with its label
-- in each partition, e.g. per sample the x-query and the y-query cluster of each point:
--     select sample, adjusted_rand_index(x.label, y.label) ... group by sample
-- Hubert and Arabie's adjusted Rand index, as scikit-learn's adjusted_rand_score: 1 when the
-- two partitions are the same up to renaming their labels, about 0 when they are no more
-- alike than chance (it can go below 0). The formula is in adjusted_rand_index_of_codes; an
-- item's two labels travel as one integer, so no ordering is needed to keep them together.
--
-- Arguments:
--   label_a, label_b     integer labels in 0 .. 2^31 - 1 (cluster labels)
-- Returns: a DOUBLE; null for fewer than two items.
create macro adjusted_rand_index(label_a, label_b) as
    adjusted_rand_index_of_codes(list(label_a::bigint * 4294967296 + label_b))
