-- adjusted_rand_index_of_codes: the adjusted Rand index of two labellings of the same items,
-- given as one list of codes, an item's two labels coded as label_a * 2^32 + label_b.
--
-- What adjusted_rand_index computes once it has listed a group's items; see its header for
-- the index. Over the pairs of items: same_a share a label in a, same_b in b, same_both in
-- both, of all_pairs = n (n - 1) / 2;
--   expected = same_a * same_b / all_pairs,  maximum = (same_a + same_b) / 2,
--   index = (same_both - expected) / (maximum - expected),
-- and 1 where maximum = expected: identical trivial partitions (one cluster each, or all
-- singletons) agree fully, as in scikit-learn.
--
-- Arguments:
--   codes                a list of label_a * 2^32 + label_b, one per item (any order)
-- Returns: a DOUBLE; null for fewer than two items.
create macro adjusted_rand_index_of_codes(codes) as (
    select
        case
            when maximum = expected then 1.0
            else (same_both - expected) / (maximum - expected)
        end
    from (
        select
            same_both,
            same_a * same_b / all_pairs as expected,
            (same_a + same_b) / 2 as maximum,
        from (
            select
                same_pairs(codes) as same_both,
                same_pairs([c // 4294967296 for c in codes]) as same_a,
                same_pairs([c % 4294967296 for c in codes]) as same_b,
                nullif(len(codes) * (len(codes) - 1) // 2, 0) as all_pairs,
        )
    )
)
