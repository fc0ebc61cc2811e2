-- head_patterns: what each head attends to, from the attention rows alone (no analysis).
--
-- The first question about a head before any clustering: how spread its rows are, how much
-- it reads labels (y tokens) rather than inputs (x tokens), and where its strongest weight
-- falls: on the query's own token, the token just before it (for a y query, its own
-- point's x), or the first token of the prompt.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $min_point: int[0..] = 1   first point whose query rows count (the first rows see 1-2 keys)
-- Grain: layer, head, query_kind.
-- Columns:
--   run_id, layer, head, query_kind,
--   n_rows               query rows counted
--   mean_entropy         mean entropy of a row, in nats
--   mean_norm_entropy    mean entropy / log(keys the row can see): 1 = uniform
--   mean_max_weight      mean largest weight of a row
--   mean_mass_y          mean attention mass on y tokens (labels) of the query rows counted
--   argmax_self_share    share of rows whose largest weight is on the query token itself
--   argmax_prev_share    share of rows whose largest weight is on the token just before
--   argmax_first_share   share of rows whose largest weight is on the first token
-- The mean mass on x tokens (inputs) is 1 - mean_mass_y.
with
query_rows as (
    select
        layer,
        head,
        query_kind,
        query_pos,
        entropy,
        max_weight,
        mass_y,
        argmax_key,
    from attention
    where run_id = $run_id and point >= $min_point
)

select
    $run_id as run_id,
    layer,
    head,
    query_kind,
    count(*) as n_rows,
    avg(entropy) as mean_entropy,
    avg(entropy / ln(query_pos + 1)) filter (where query_pos > 0) as mean_norm_entropy,
    avg(max_weight) as mean_max_weight,
    avg(mass_y) as mean_mass_y,
    avg((argmax_key = query_pos)::int) as argmax_self_share,
    avg((argmax_key = query_pos - 1)::int) as argmax_prev_share,
    avg((argmax_key = 0)::int) as argmax_first_share,
from query_rows
group by layer, head, query_kind
order by layer, head, query_kind
