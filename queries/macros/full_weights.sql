-- full_weights: an attention row over all of its keys, from the row as the store holds it.
--
-- The attention table keeps the weights of the keys a causal query sees, keys 0..query_pos
-- (query_pos + 1 values); the model's later keys are masked, exactly 0, and not stored. This
-- gives the row back over n_keys keys (2 * n_points of the run: runs.n_ctx is the model's
-- longest), zeros appended, so that weights[k + 1] is the weight on key k for every k:
--     select full_weights(weights, 80)::FLOAT[80] as w from attention    -- array_* functions
--     select full_weights(a.weights, 2 * r.n_points) from attention a join runs r using (run_id)
-- The same as attnstore.schema.full_rows in Python.
--
-- Arguments:
--   weights              a stored attention row (FLOAT[] of query_pos + 1 values)
--   n_keys               the number of keys of a full row, at least query_pos + 1
-- Returns: a FLOAT[] of n_keys values.
create macro full_weights(weights, n_keys) as
    list_resize(weights, n_keys, 0::FLOAT)
