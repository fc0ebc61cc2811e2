-- latest_analyses: every analysis, ranked newest first within its run and within its view.
--
-- "The latest" analysis is the one with the newest created_at, the greater analysis_id on a
-- tie: the order of Store.ids (attnstore/store.py), which a test holds this view to. It is
-- the one place SQL picks "the latest", for what reads the latest of every run at once
-- (head_metric_values). A named query that reads one analysis takes it as $analysis_id
-- (default latest_analysis: filled by Store.ids before the SQL runs, attnstore/queries.py)
-- and never picks it itself.
--
-- Parameters: none.
-- Grain: analysis_id.
-- Columns:
--   analysis_id, run_id, view, backend,
--   created_at           when the analysis was committed (UTC)
--   run_recency          1 = the latest analysis of its run, 2 = the one before, ...
--   view_recency         the same among the analyses of its run with its view
--   latest_of_run        run_recency = 1
--   latest_of_view       view_recency = 1
with
ranked as (
    select
        analysis_id,
        run_id,
        view,
        backend,
        created_at,
        row_number() over (
            partition by run_id order by created_at desc, analysis_id desc
        ) as run_recency,
        row_number() over (
            partition by run_id, view order by created_at desc, analysis_id desc
        ) as view_recency,
    from analyses
)

select
    analysis_id,
    run_id,
    view,
    backend,
    created_at,
    run_recency,
    view_recency,
    run_recency = 1 as latest_of_run,
    view_recency = 1 as latest_of_view,
from ranked
