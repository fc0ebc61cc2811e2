-- literal_hits: per problem, the dominant literals of its clusters against the target's.
--
-- A literal is x_j (sign +1) or not x_j (sign -1): 2 * n_dims of them. The target is the set
-- of literals of the sample's hidden function (nonzero weight); the dominant literals are
-- those dominant in some cluster of the problem (docs/analysis.md), counted once each; a hit
-- is a dominant literal in the target. Chance is the same number of literals drawn at random
-- (without replacement) from the 2 * n_dims: they hit n_dominant * n_target / n_literals
-- target literals on average, so their precision is n_target / n_literals and their recall
-- n_dominant / n_literals.
--
-- A head's precision pools its problems (head_literals): literal_precision = sum(n_hits) /
-- sum(n_dominant), and its chance level the same ratio for the random literals,
-- chance_precision = sum(expected_hits) / sum(n_dominant); so precision_lift = sum(n_hits) /
-- sum(expected_hits), the hits over the hits chance would give. Pool with these counts, not
-- by averaging the per-problem ratios below (the same columns over a problem's one sample).
--
-- Target, hits and chance are null for an analysis whose dominant literals carry no in_target
-- (tasks whose functions are not made of literals: half-spaces, nearest_neighbours).
--
-- Parameters: none.
-- Grain: analysis_id, layer, head, sample, query_kind.
-- Columns:
--   analysis_id, run_id, view, layer, head, sample, query_kind,
--   clustered            best_k >= 2
--   n_literals           2 * n_dims: every literal, x_j and not x_j
--   n_dominant           distinct dominant literals over the problem's clusters
--   n_target             literals in the sample's hidden function
--   n_hits               dominant literals in the target
--   expected_hits        n_dominant * n_target / n_literals: the hits of random literals
--   literal_precision    dominant literals in the target / dominant literals, pooled over
--                        samples (null where none is dominant)
--   chance_precision     literal_precision of as many literals drawn at random: expected hits
--                        / dominant literals, pooled over samples (null where none is
--                        dominant)
--   literal_recall       mean over samples with a nonempty target of target literals found
--                        dominant / |target| (0 for a sample that could not be clustered)
--   chance_recall        literal_recall of as many literals drawn at random
-- A problem not clustered has no dominant literal. Over one problem's sample,
-- literal_precision = n_hits / n_dominant, chance_precision = n_target / n_literals,
-- literal_recall = n_hits / n_target (null where n_target = 0), chance_recall = n_dominant /
-- n_literals.
with
-- per problem: its distinct dominant literals and those in the target, a literal as one int
-- (2 j for x_j, 2 j + 1 for not x_j); in_target is null throughout for tasks whose functions
-- are not made of literals
dominant as (
    select
        analysis_id,
        layer,
        head,
        sample,
        query_kind,
        len(list_distinct(list(2 * literal + (sign < 0)::int))) as n_dominant,
        len(list_distinct(list(2 * literal + (sign < 0)::int) filter (where in_target)))
            as n_hits,
        bool_or(in_target is not null) as knows_target,
    from dominant_literals
    where is_dominant
    group by all
),

targets as (
    select run_id, sample, count(*) as n_target,
    from (
        select distinct run_id, sample, literal, sign,
        from functions
        where weight != 0
    )
    group by all
),

counted as (
    select
        p.analysis_id,
        p.run_id,
        p.view,
        p.layer,
        p.head,
        p.sample,
        p.query_kind,
        p.clustered,
        2 * r.n_dims as n_literals,
        coalesce(d.n_dominant, 0) as n_dominant,
        coalesce(t.n_target, 0) as n_target,
        coalesce(d.n_hits, 0) as n_hits,
        bool_or(d.knows_target) over (partition by p.analysis_id) as knows_target,
    from problem_fits as p
    join runs as r using (run_id)
    left join dominant as d using (analysis_id, layer, head, sample, query_kind)
    left join targets as t using (run_id, sample)
),

-- counts against the target only where the analysis knows the target
known as (
    select
        * replace (
            case when knows_target then n_target end as n_target,
            case when knows_target then n_hits end as n_hits
        ),
    from counted
)

select
    analysis_id,
    run_id,
    view,
    layer,
    head,
    sample,
    query_kind,
    clustered,
    n_literals,
    n_dominant,
    n_target,
    n_hits,
    n_dominant * n_target / n_literals as expected_hits,
    n_hits / nullif(n_dominant, 0) as literal_precision,
    case when n_dominant > 0 then n_target / n_literals end as chance_precision,
    n_hits / nullif(n_target, 0) as literal_recall,
    case when n_target > 0 then n_dominant / n_literals end as chance_recall,
from known
