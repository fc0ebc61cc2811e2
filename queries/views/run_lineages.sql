-- run_lineages: every run with its lineage: the runs that differ only by their train_step.
--
-- Runs that differ only by their checkpoint's train_step form a lineage: the same task and
-- task parameters, extraction seed, samples and points, and checkpoints of one training (the
-- same train config in the card, runs.card_json's "train"; the whole card for a checkpoint
-- with none, e.g. incontext-bool's). Queries that follow a metric over training group by it.
--
-- Parameters: none.
-- Grain: run_id.
-- Columns:
--   run_id, task, n_points, train_step,
--   seed                 the prompt seed: draws the prompts and hidden functions
--   n_samples            prompts extracted
--   lineage              the runs' lineage: 16 hex digits of the md5 of what they share
select
    run_id,
    task,
    seed,
    n_samples,
    n_points,
    train_step,
    md5(concat_ws(
        '|', task, coalesce(task_params_json, ''), seed::varchar, n_samples::varchar,
        n_points::varchar, coalesce(json_extract_string(card_json, '/train'), card_json, '')
    ))[:16] as lineage,
from runs
