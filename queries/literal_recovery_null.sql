-- literal_recovery_null: each head's literal recovery against hidden functions shuffled
-- across samples, and the best head against the best of the shuffled heads.
--
-- A head's precision_lift (head_literals: the hits of its dominant literals on the sample's
-- own hidden function, over the hits literals drawn at random would give) is compared with
-- the same lift when each sample's dominant literals are scored against the hidden function
-- of another sample: $permutations random permutations of the analysis's samples, the same
-- for every head (permutation p sends sample s to the sample at s's place in the samples
-- ordered by mix32(mix32(mix32($seed) ^ p) ^ sample): no random number generator, so the
-- same store gives the same bytes). That null keeps everything about the clusters and
-- literals but their link to the function; it asks whether the literals track their own
-- prompt's function, not just the literals such functions tend to have.
-- Selection: the best head's lift is the maximum over every (layer, head, query kind), and
-- the maximum of noisy estimates is biased up; max_p_value compares each head's lift with the
-- best lift over heads within each permutation (the max-statistic null, Westfall-Young), so
-- a head that passes it passes as the best of all heads would have to.
-- p-values are (1 + permutations at or above the observed lift) / (1 + $permutations).
-- Needs an analysis whose dominant literals know the target (literal tasks); none: no rows.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $permutations: int[1..100000] = 200  random permutations of the samples
--   $seed: int[0..4294967295] = 0  the permutations' hash seed
-- Grain: layer, head, query_kind.
-- Columns:
--   analysis_id, layer, head, query_kind,
--   precision_lift       literal_precision / chance_precision: hits / hits expected by chance
--   null_lift_mean       mean of the head's precision_lift over the permutations
--   null_lift_lower, null_lift_upper  the 2.5% and 97.5% quantiles of it (linear
--                        interpolation, quantile_cont)
--   lift_excess          precision_lift - null_lift_mean
--   lift_p_value         the head's own permutation p-value (one head, no selection)
--   max_null_upper       the 95% quantile over permutations of the best lift over heads: what
--                        the best head must beat
--   max_p_value          the max-statistic p-value: permutations whose best head reaches this
--                        head's precision_lift (adjusted for choosing among the heads)
--   n_permutations       permutations run ($permutations)
with
chosen as (
    select a.analysis_id, a.run_id, 2 * r.n_dims as n_literals,
    from analyses as a
    join runs as r using (run_id)
    where a.analysis_id = $analysis_id
),

-- per problem: its distinct dominant literals, a literal as one int (2 j: x_j, 2 j + 1: not
-- x_j), as literal_hits codes them; only analyses that know the target
dominant as (
    select
        layer,
        head,
        query_kind,
        sample,
        list_distinct(list(2 * literal + (sign < 0)::int)) as literals,
    from dominant_literals
    where analysis_id = $analysis_id and is_dominant and in_target is not null
    group by all
),

targets as (
    select
        f.sample,
        list_distinct(list(2 * f.literal + (f.sign < 0)::int)) as literals,
    from functions as f
    where f.run_id = (select run_id from chosen) and f.weight != 0
    group by f.sample
),

samples as (
    select sample, row_number() over (order by sample) - 1 as place,
    from problem_fits
    where analysis_id = $analysis_id
    group by sample
),

-- permutation 0 is the identity (the observed lift); 1 .. $permutations are shuffles
shuffled as (
    select
        p.permutation,
        s.sample,
        row_number() over (
            partition by p.permutation
            order by mix32(xor(mix32(xor(mix32($seed), p.permutation)), s.sample)), s.sample
        ) - 1 as place,
    from samples as s
    cross join range(1, $permutations + 1) as p(permutation)
),

-- which sample's function each sample is scored against, per permutation
pairing as (
    select 0 as permutation, sample, sample as target_sample,
    from samples
    union all
    select h.permutation, s.sample, h.sample as target_sample,
    from shuffled as h
    join samples as s using (place)
),

per_permutation as (
    select
        pr.permutation,
        d.layer,
        d.head,
        d.query_kind,
        sum(len(list_intersect(d.literals, coalesce(t.literals, [])))) as n_hits,
        sum(len(d.literals) * len(coalesce(t.literals, [])))
            / any_value((select n_literals from chosen)) as expected_hits,
    from dominant as d
    join pairing as pr using (sample)
    left join targets as t on t.sample = pr.target_sample
    group by pr.permutation, d.layer, d.head, d.query_kind
),

lifts as (
    select *, n_hits / nullif(expected_hits, 0) as lift,
    from per_permutation
),

observed as (
    select layer, head, query_kind, lift as precision_lift,
    from lifts
    where permutation = 0
),

best_per_permutation as (
    select permutation, max(lift) as best_lift,
    from lifts
    where permutation > 0
    group by permutation
),

head_null as (
    select
        l.layer,
        l.head,
        l.query_kind,
        avg(l.lift) as null_lift_mean,
        quantile_cont(l.lift, 0.025) as null_lift_lower,
        quantile_cont(l.lift, 0.975) as null_lift_upper,
        (1 + count(*) filter (where l.lift >= o.precision_lift)) / (1 + $permutations)
            as lift_p_value,
    from lifts as l
    join observed as o using (layer, head, query_kind)
    where l.permutation > 0
    group by l.layer, l.head, l.query_kind
)

select
    (select analysis_id from chosen) as analysis_id,
    o.layer,
    o.head,
    o.query_kind,
    o.precision_lift,
    n.null_lift_mean,
    n.null_lift_lower,
    n.null_lift_upper,
    o.precision_lift - n.null_lift_mean as lift_excess,
    n.lift_p_value,
    (select quantile_cont(best_lift, 0.95) from best_per_permutation) as max_null_upper,
    (
        1 + (
            select count(*) from best_per_permutation as b
            where b.best_lift >= o.precision_lift
        )
    ) / (1 + $permutations) as max_p_value,
    $permutations as n_permutations,
from observed as o
join head_null as n using (layer, head, query_kind)
order by o.precision_lift desc nulls last, o.layer, o.head, o.query_kind
