-- hidden_function: the hidden function of one prompt, written out: what its labels follow.
--
-- Read from the functions table (each sample's function, one row per term and literal, as
-- attnstore/tasks.py draws it). x_j is input j, from 0, as head_clusters names literals;
-- ¬x_j holds where x_j = -1. A conjunction is its literals joined by ∧, a disjunction by ∨;
-- dnf is an OR of terms, cnf an AND of clauses; an empty conjunction (term) is ⊤, always
-- true, an empty disjunction (clause) ⊥, always false. A threshold task (majority,
-- int_halfspace, sparse_thres) is its weighted sum against its threshold; a parity is the
-- XOR (⊕) of its bits, x_j = +1 read as true. nearest_neighbours has none: null.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $sample: int[0..] = 0      the sample (prompt)
-- Grain: run_id, sample.
-- Columns:
--   run_id, task, sample,
--   hidden_function      the function as text, e.g. 'x1 ∧ ¬x4 ∧ x7'; null where none
--   n_function_literals  literals (nonzero weights) in it, counted in every term they are in
with
run as (
    select run_id, task,
    from runs
    where run_id = $run_id
),

-- the sample's function: one row per term and literal, absent literals (weight 0) included
sample_rows as (
    select term, literal, weight, sign, threshold,
    from functions
    where run_id = $run_id and sample = $sample
),

-- its nonzero weights: each literal as text, signed (¬x4) and in a sum (− 2x4)
weights as (
    select
        term,
        literal,
        (case when sign > 0 then '' else '¬' end) || 'x' || literal as signed_literal,
        (case when weight > 0 then ' + ' else ' − ' end)
            || (case when abs(weight) = 1 then '' else abs(weight)::varchar end)
            || 'x' || literal as summand,
    from sample_rows
    where weight != 0
),

-- each term (clause) of the sample: its literals joined both ways
terms as (
    select
        f.term,
        count(w.literal) as n_literals,
        string_agg(w.signed_literal, ' ∧ ' order by w.literal) as all_of,
        string_agg(w.signed_literal, ' ∨ ' order by w.literal) as any_of,
    from (select distinct term, from sample_rows) as f
    left join weights as w using (term)
    group by f.term
),

-- the function's pieces, each task's way of joining them chosen below
pieces as (
    select
        sum(n_literals) as n_literals,
        string_agg(coalesce(all_of, '⊤'), ' ∨ ' order by term) as conjunction,
        string_agg(coalesce(any_of, '⊥'), ' ∧ ' order by term) as disjunction,
        string_agg(
            case when n_literals > 1 then '(' || all_of || ')' else coalesce(all_of, '⊤') end,
            ' ∨ '
            order by term
        ) as dnf,
        string_agg(
            case when n_literals > 1 then '(' || any_of || ')' else coalesce(any_of, '⊥') end,
            ' ∧ '
            order by term
        ) as cnf,
    from terms
),

sums as (
    select
        string_agg(summand, '' order by literal) as weighted,
        string_agg('x' || literal, ' ⊕ ' order by literal) as xor,
        (select any_value(threshold) from sample_rows) as threshold,
    from weights
)

select
    r.run_id,
    r.task,
    $sample as sample,
    case
        when r.task in ('conjunction', 'teach_conjunction') then p.conjunction
        when r.task in ('disjunction', 'sparse_disjunction') then p.disjunction
        when r.task = 'dnf' then p.dnf
        when r.task = 'cnf' then p.cnf
        when r.task in ('majority', 'int_halfspace', 'sparse_thres') then
            coalesce(
                regexp_replace(regexp_replace(s.weighted, '^ \+ ', ''), '^ − ', '−'), '0'
            ) || ' > ' || printf('%g', s.threshold)
        when r.task in ('parity', 'sparse_parity') then coalesce(s.xor, '⊥')
    end as hidden_function,
    p.n_literals::int as n_function_literals,
from run as r, pieces as p, sums as s
