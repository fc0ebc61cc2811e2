-- head_attention: one head's attention in one sample, each query row over all of its keys.
--
-- The attention table keeps a causal row's weights on keys 0..query_pos only; here each row
-- comes back over all 2N keys of the prompt (macro full_weights; the keys after query_pos,
-- masked by the model, are 0), ready to draw as a (2N, 2N) matrix: row query_pos, column
-- key_pos, x_i at position 2i and y_i at 2i + 1. The head figure and the report's attention
-- viewer read it. Reads one run, $run_id.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $layer: int[0..]           the head's layer
--   $head: int[0..]            the head
--   $sample: int[0..] = 0      the sample (prompt)
-- Grain: query_pos.
-- Columns:
--   run_id, layer, head, sample, query_pos, query_kind, point,
--   full_weights         the row's weight on each key 0..2N - 1 (N: the run's n_points),
--                        full_weights[k + 1] on key k; 0 on the keys after query_pos
with
run as (
    select run_id, 2 * n_points as n_keys,
    from runs
    where run_id = $run_id
)

select
    a.run_id,
    a.layer,
    a.head,
    a.sample,
    a.query_pos,
    a.query_kind,
    a.point,
    full_weights(a.weights, r.n_keys) as full_weights,
from attention as a
join run as r using (run_id)
where a.run_id = $run_id and a.layer = $layer and a.head = $head and a.sample = $sample
order by a.query_pos
