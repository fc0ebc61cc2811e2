-- run_interventions: the interventions of a run, the latest of each method and target first.
--
-- One row per intervention of $run_id (attnstore intervene writes one per method and knockout
-- target; another seed or device makes another of the same method and target). "The latest"
-- of a method and target is the one with the newest created_at, the greater intervention_id on
-- a tie: the one 'attnstore plot heads' maps. A run with no intervention (of $method,
-- $target) has one row, its intervention columns null. Reads no analysis. Its rows hold no
-- effect (no interval either): intervention_effects, heads_by_effect and additivity_gap do.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $method: str = null        one method (zero, mean, resample, knockout); null: every method
--   $target: str = null        one target ('z' or a knockout key class); null: every target
-- Grain: intervention_id.
-- Columns:
--   run_id, intervention_id, method, target,
--   resample_seed        seed of the resample permutation; null for other methods
--   heads                the heads changed together, e.g. L1H0,L1H1,L1H2 (--heads); null:
--                        every head, one at a time
--   changed_positions    the query positions changed: all, x, y, N or N..M
--   device               where the model ran
--   created_at           when the intervention was committed (UTC)
--   recency              1 = the latest intervention of its method, target, heads and
--                        positions in the run, 2 = the one before it, ...
with
chosen as (
    select
        intervention_id,
        run_id,
        method,
        target,
        seed as resample_seed,
        params_json ->> 'heads' as heads,
        coalesce(params_json ->> 'positions', 'all') as changed_positions,
        device,
        created_at,
    from interventions
    where run_id = $run_id
        and ($method is null or method = $method)
        and ($target is null or target = $target)
),

ranked as (
    select
        *,
        row_number() over (
            partition by method, target, heads, changed_positions
            order by created_at desc, intervention_id desc
        ) as recency,
    from chosen
)

select
    r.run_id,
    i.intervention_id,
    i.method,
    i.target,
    i.resample_seed,
    i.heads,
    i.changed_positions,
    i.device,
    i.created_at,
    i.recency,
from runs as r
left join ranked as i using (run_id)
where r.run_id = $run_id
order by i.method, i.target, i.heads nulls first, i.changed_positions <> 'all',
    i.changed_positions, i.recency
