-- contents: every run in the store and every analysis made of it, newest first.
--
-- The place to find run and analysis ids, and which row views a run has been analysed
-- with. A run that has not been analysed has one row with a null analysis_id.
--
-- Parameters: none.
-- Grain: run_id, analysis_id.
-- Columns:
--   run_id,
--   run_created_at       when the run was committed (UTC)
--   task, checkpoint, n_layers, n_heads, n_dims, n_points,
--   n_samples            prompts extracted
--   model_accuracy       share of the model's predictions that are right
--   analysis_id,
--   analysis_created_at  when the analysis was committed (UTC)
--   view, view_params_json, backend, k_min, k_max, n_problems, notes_json,
-- model_accuracy is over every sample and point of the run (runs.accuracy); notes_json says
-- how many problems carry each note (see docs/analysis.md).
with
run_rows as (
    select
        run_id,
        created_at as run_created_at,
        task,
        checkpoint,
        n_layers,
        n_heads,
        n_dims,
        n_points,
        n_samples,
        accuracy as model_accuracy,
    from runs
),

analysis_rows as (
    select
        run_id,
        analysis_id,
        created_at as analysis_created_at,
        view,
        view_params_json,
        backend,
        k_min,
        k_max,
        n_problems,
        notes_json,
    from analyses
)

select
    r.run_id,
    r.run_created_at,
    r.task,
    r.checkpoint,
    r.n_layers,
    r.n_heads,
    r.n_dims,
    r.n_points,
    r.n_samples,
    r.model_accuracy,
    a.analysis_id,
    a.analysis_created_at,
    a.view,
    a.view_params_json,
    a.backend,
    a.k_min,
    a.k_max,
    a.n_problems,
    a.notes_json,
from run_rows as r
left join analysis_rows as a using (run_id)
order by r.run_created_at desc, a.analysis_created_at desc nulls last
