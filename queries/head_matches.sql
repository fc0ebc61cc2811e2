-- head_matches: which head of run a does each head of run b match (attnstore match)?
--
-- Head indices are arbitrary across trainings: attnstore match pairs the heads of $run_b with
-- those of $run_a layer by layer, by the mean total variation distance between their
-- attention rows on the same prompts (cost: 0 alike, 1 disjoint keys), one to one at least
-- total cost. Every pair of heads of a layer has a row with its cost; matched marks the
-- matching's pairs, each with its margin (positive: each head is closer to its partner than
-- to any other head) and null_cost, the mean cost of the layer's unmatched pairs: a matched
-- cost near null_cost means nothing. The matching read is the latest of $run_b to $run_a
-- (latest_matchings). Every layer x head_a x head_b of $run_b's shape has a row; without a
-- matching the matching's columns are null ('attnstore match --run-a A --run-b B' makes one).
--
-- Parameters:
--   $run_b = latest_run        the run whose heads were matched [default: the latest run]
--   $run_a: str = null         the reference run; null: the run of $run_b's latest matching
-- Grain: layer, head_a, head_b.
-- Columns:
--   match_id, run_a, run_b, layer, head_a, head_b, cost, matched, margin, null_cost,
--   n_samples            prompts compared (samples 0..n_samples-1 of both runs)
with
chosen as (
    select match_id, run_a, run_b, n_samples,
    from latest_matchings
    where run_b = $run_b
        and (($run_a is null and run_b_recency = 1) or (run_a = $run_a and pair_recency = 1))
),

pairs as (
    select
        r.run_id as run_b,
        l.layer::smallint as layer,
        a.head::smallint as head_a,
        b.head::smallint as head_b,
    from runs as r, range(r.n_layers) as l(layer), range(r.n_heads) as a(head),
        range(r.n_heads) as b(head)
    where r.run_id = $run_b
),

stored as (
    select h.*,
    from head_matches as h
    where h.match_id in (select match_id from chosen)
)

select
    c.match_id,
    c.run_a,
    p.run_b,
    c.n_samples,
    p.layer,
    p.head_a,
    p.head_b,
    s.cost,
    s.matched,
    s.margin,
    s.null_cost,
from pairs as p
left join stored as s using (layer, head_a, head_b)
left join chosen as c on true
order by p.layer, p.head_a, p.head_b
