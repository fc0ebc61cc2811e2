-- run_overview: the model's accuracy by position, against the baselines, on the run's prompts.
--
-- The rows of the shared view point_accuracy for one run, where each column is defined: the
-- model's accuracy from the stored predictions, and the majority and elimination baselines
-- (conjunction tasks only) computed in SQL from the stored inputs, as attnstore eval
-- computes them (attnstore/training.py).
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
-- Grain: point.
-- Columns:
--   run_id, task, point,
--   n_samples            prompts (the run's predictions at the point)
--   positive_label_share share of positive labels (y = +1) among the points the row counts
--   model_accuracy       share of the model's predictions that are right
--   majority_accuracy    the same for the majority baseline
--   elimination_accuracy the same for the elimination algorithm (conjunctions only)
--   model_vs_best        model_accuracy minus the better baseline
select
    run_id,
    task,
    point,
    n_samples,
    positive_label_share,
    model_accuracy,
    majority_accuracy,
    elimination_accuracy,
    model_vs_best,
from point_accuracy
where run_id = $run_id
order by point
