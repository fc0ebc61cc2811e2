-- same_pairs: how many pairs of items share a value, given the list of the items' values.
--
-- The building block of the adjusted Rand index: for [0, 0, 1, 1, 1] it is C(2, 2) + C(3, 2)
-- = 4. Each distinct value is counted once (list_histogram), in integers; an empty list has 0.
--
-- Arguments:
--   items                a list of values (labels)
-- Returns: a BIGINT >= 0.
create macro same_pairs(items) as
    coalesce(list_sum([n * (n - 1) // 2 for n in map_values(list_histogram(items))]), 0)::bigint
