-- sample_inputs: one sample's points: each point's input x and its label y.
--
-- The prompt a head reads, point by point: x_i at position 2i, y_i at 2i + 1 (head_attention's
-- query_pos). The head figure's input strips and the report's attention tokens read it.
-- Reads one run, $run_id.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $sample: int[0..] = 0      the sample (prompt)
-- Grain: point.
-- Columns:
--   run_id, sample, point, x, y,
select
    run_id,
    sample,
    point,
    x,
    y,
from inputs
where run_id = $run_id and sample = $sample
order by point
