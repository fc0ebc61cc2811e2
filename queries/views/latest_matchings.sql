-- latest_matchings: every matching of two runs' heads, ranked newest first (attnstore match).
--
-- Head indices are arbitrary across trainings; attnstore match pairs run_b's heads with
-- run_a's by their attention (tables matchings and head_matches). "The latest" matching is
-- the one with the newest created_at, the greater match_id on a tie (the order of Store.ids),
-- among the matchings of the same two runs (pair_recency), of the same run_b (run_b_recency),
-- or of runs of the same two lineages either way round (lineage_recency; see run_lineages:
-- head identity is stable within a lineage, so a matching of two trainings' final runs
-- names the heads of every step). It is the one place SQL picks the latest matching.
--
-- Parameters: none.
-- Grain: match_id.
-- Columns:
--   match_id, run_a, run_b,
--   n_samples            prompts compared (samples 0..n_samples-1 of both runs)
--   created_at           when the matching was committed (UTC)
--   lineage_a            run_a's lineage (run_lineages)
--   lineage_b            run_b's lineage (run_lineages)
--   pair_recency         1 = the latest matching of run_b to run_a, 2 = the one before, ...
--   run_b_recency        the same among every matching of run_b
--   lineage_recency      the same among the matchings between runs of lineage_a and
--                        lineage_b, either way round
select
    m.match_id,
    m.run_a,
    m.run_b,
    m.n_samples,
    m.created_at,
    la.lineage as lineage_a,
    lb.lineage as lineage_b,
    row_number() over (
        partition by m.run_a, m.run_b order by m.created_at desc, m.match_id desc
    ) as pair_recency,
    row_number() over (
        partition by m.run_b order by m.created_at desc, m.match_id desc
    ) as run_b_recency,
    row_number() over (
        partition by least(la.lineage, lb.lineage), greatest(la.lineage, lb.lineage)
        order by m.created_at desc, m.match_id desc
    ) as lineage_recency,
from matchings as m
join run_lineages as la on la.run_id = m.run_a
join run_lineages as lb on lb.run_id = m.run_b
