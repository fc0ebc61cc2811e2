-- accuracy_over_training: the model's accuracy per position at each training step, and baselines.
--
-- run_overview at every step of a lineage: runs that differ only by their checkpoint's
-- train_step, grouped as head_emergence groups them (the same task and task parameters,
-- extraction seed, samples and points, and train config in the card). Computed in SQL from
-- the stored rows: model_accuracy from predictions; majority_accuracy from inputs (predict
-- the label seen most often among the earlier points, -1 on a tie or with none seen);
-- elimination_accuracy from inputs, for the conjunction tasks only (start from all 2 * n_dims
-- literals, delete each literal a positive example falsifies, predict +1 iff every kept
-- literal holds; null for other tasks): the baselines of attnstore eval (attnstore/train.py).
-- Where runs of a lineage share a step, their prompts are pooled. Runs with no train_step
-- are left out. Reads no analysis.
--
-- Parameters:
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this extraction seed; null: every seed
--   $lineage: str = null       only the runs of this lineage; null: every lineage
-- Grain: lineage, train_step, point.
-- Columns:
--   lineage              the runs' lineage, as head_emergence names it
--   task, seed           the lineage's task and extraction seed
--   train_step           the checkpoint's training step
--   point,
--   n_runs               runs of the lineage at this step
--   n_samples            prompts (pooled over those runs)
--   positive_share       share of labels y = +1 at this point
--   model_accuracy       share of the model's predictions that are right
--   majority_accuracy    the same for the majority baseline
--   elimination_accuracy the same for the elimination algorithm (conjunctions only)
--   model_vs_best        model_accuracy minus the better baseline
with
chosen_runs as (
    select
        run_id,
        train_step,
        task,
        seed,
        task in ('conjunction', 'teach_conjunction') as eliminates,
        lineage,
    from run_lineages
    where train_step is not null
        and ($task is null or task = $task) and ($seed is null or seed = $seed)
        and ($lineage is null or lineage = $lineage)
),

majority as (
    select
        run_id,
        sample,
        point,
        y,
        coalesce(
            sum(y) over (
                partition by run_id, sample order by point
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as seen,
        case when seen > 0 then 1 else -1 end as pred,
    from inputs
    join chosen_runs using (run_id)
),

bits as (
    select
        i.run_id,
        i.sample,
        i.point,
        i.y,
        unnest(range(len(i.x))) as literal,
        i.x[literal + 1] as value,
    from inputs as i
    join chosen_runs as r using (run_id)
    where r.eliminates
),

-- A positive example with x_j = v falsifies the literal (j, -v); keep the first such point.
falsified as (
    select run_id, sample, literal, -value as sign, min(point) as at_point,
    from bits
    where y > 0
    group by all
),

-- At point i, the literal violated by x_ij is (j, -x_ij); +1 iff each was deleted before i.
elimination as (
    select
        b.run_id,
        b.sample,
        b.point,
        any_value(b.y) as y,
        case
            when bool_and(coalesce(f.at_point < b.point, false)) then 1 else -1
        end as pred,
    from bits as b
    left join falsified as f
        on f.run_id = b.run_id and f.sample = b.sample and f.literal = b.literal
            and f.sign = -b.value
    group by b.run_id, b.sample, b.point
),

per_point as (
    select
        r.lineage,
        any_value(r.task) as task,
        any_value(r.seed) as seed,
        r.train_step,
        p.point,
        count(distinct p.run_id) as n_runs,
        count(*) as n_samples,
        avg((p.y > 0)::int) as positive_share,
        avg(p.correct::int) as model_accuracy,
        avg((m.pred = m.y)::int) as majority_accuracy,
        avg((e.pred = e.y)::int) as elimination_accuracy,
    from predictions as p
    join chosen_runs as r using (run_id)
    join majority as m using (run_id, sample, point)
    left join elimination as e using (run_id, sample, point)
    group by r.lineage, r.train_step, p.point
)

select
    lineage,
    task,
    seed,
    train_step,
    point,
    n_runs,
    n_samples,
    positive_share,
    model_accuracy,
    majority_accuracy,
    elimination_accuracy,
    model_accuracy - greatest(majority_accuracy, elimination_accuracy) as model_vs_best,
from per_point
order by lineage, train_step, point
