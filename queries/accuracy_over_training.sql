-- accuracy_over_training: the model's accuracy per position at each training step, and baselines.
--
-- run_overview at every step of a lineage: runs that differ only by their checkpoint's
-- train_step (run_lineages), as head_emergence groups them (the same task and task
-- parameters, extraction seed, samples and points, and train config in the card). Each
-- column is point_accuracy's (the model's accuracy from the stored predictions, the majority
-- and elimination baselines in SQL from the stored inputs, as attnstore eval computes them);
-- where runs of a lineage share a step, their prompts are pooled (each run weighted by its
-- prompts). Runs with no train_step are left out. Reads no analysis.
--
-- Parameters:
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this extraction seed; null: every seed
--   $lineage: str = null       only the runs of this lineage; null: every lineage
-- Grain: lineage, train_step, point.
-- Columns:
--   lineage              the runs' lineage: 16 hex digits of the md5 of what they share
--   task,
--   seed                 the prompt seed: draws the prompts and hidden functions
--   train_step, point,
--   n_runs               runs of the lineage at this step
--   n_samples            prompts (pooled over those runs)
--   positive_label_share share of positive labels (y = +1) among the points the row counts
--   model_accuracy       share of the model's predictions that are right
--   majority_accuracy    the same for the majority baseline
--   elimination_accuracy the same for the elimination algorithm (conjunctions only)
--   model_vs_best        model_accuracy minus the better baseline
with
chosen_runs as (
    select run_id, lineage, task, seed, train_step,
    from run_lineages
    where train_step is not null
        and ($task is null or task = $task) and ($seed is null or seed = $seed)
        and ($lineage is null or lineage = $lineage)
),

-- the prompts of the runs at one step pooled: each run's shares weighted by its prompts
pooled as (
    select
        r.lineage,
        any_value(r.task) as task,
        any_value(r.seed) as seed,
        r.train_step,
        a.point,
        count(*) as n_runs,
        sum(a.n_samples)::bigint as n_samples,
        sum(a.positive_label_share * a.n_samples) / sum(a.n_samples) as positive_label_share,
        sum(a.model_accuracy * a.n_samples) / sum(a.n_samples) as model_accuracy,
        sum(a.majority_accuracy * a.n_samples) / sum(a.n_samples) as majority_accuracy,
        sum(a.elimination_accuracy * a.n_samples) / sum(a.n_samples) as elimination_accuracy,
    from point_accuracy as a
    join chosen_runs as r using (run_id)
    group by r.lineage, r.train_step, a.point
)

select
    lineage,
    task,
    seed,
    train_step,
    point,
    n_runs,
    n_samples,
    positive_label_share,
    model_accuracy,
    majority_accuracy,
    elimination_accuracy,
    model_accuracy - greatest(majority_accuracy, elimination_accuracy) as model_vs_best,
from pooled
order by lineage, train_step, point
