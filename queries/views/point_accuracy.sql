-- point_accuracy: per run and point, the model's accuracy against the baselines, on its prompts.
--
-- Computed from the stored rows of each run, on its own prompts: model_accuracy from
-- predictions; majority_accuracy from inputs (predict the label seen most often among the
-- earlier points, -1 on a tie or with none seen); elimination_accuracy from inputs, for the
-- conjunction tasks only (start from all 2 * n_dims literals, delete each literal a positive
-- example falsifies, predict +1 iff every kept literal holds; null for other tasks). These are
-- the baselines of attnstore eval (majority_baseline and elimination_baseline of
-- attnstore/training.py, whose ELIMINATION_TASKS are the tasks below; a test holds the two
-- equal). run_overview reads one run, accuracy_over_training the runs of a lineage. Reads no
-- analysis.
--
-- Parameters: none.
-- Grain: run_id, point.
-- Columns:
--   run_id, task, point,
--   n_samples            prompts (the run's predictions at the point)
--   positive_label_share share of positive labels (y = +1) among the points the row counts
--   model_accuracy       share of the model's predictions that are right
--   majority_accuracy    the same for the majority baseline
--   elimination_accuracy the same for the elimination algorithm (conjunctions only)
--   model_vs_best        model_accuracy minus the better baseline
with
eliminating as (
    select run_id, task in ('conjunction', 'teach_conjunction') as eliminates,
    from runs
),

-- predict the sign of the sum of the earlier labels, -1 on a tie or with none seen
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
    join eliminating as r using (run_id)
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
        p.run_id,
        p.point,
        count(*) as n_samples,
        avg((p.y > 0)::int) as positive_label_share,
        avg(p.correct::int) as model_accuracy,
        avg((m.pred = m.y)::int) as majority_accuracy,
        avg((e.pred = e.y)::int) as elimination_accuracy,
    from predictions as p
    join majority as m using (run_id, sample, point)
    left join elimination as e using (run_id, sample, point)
    group by p.run_id, p.point
)

select
    p.run_id,
    r.task,
    p.point,
    p.n_samples,
    p.positive_label_share,
    p.model_accuracy,
    p.majority_accuracy,
    p.elimination_accuracy,
    p.model_accuracy - greatest(p.majority_accuracy, p.elimination_accuracy)
        as model_vs_best,
from per_point as p
join runs as r using (run_id)
