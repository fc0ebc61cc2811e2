-- run_overview: the model's accuracy by position, against the baselines, on the run's prompts.
--
-- Everything is computed from the stored rows of the run, on its own prompts:
-- model_accuracy from predictions; majority_accuracy from inputs (predict the label seen
-- most often among the earlier points, -1 on a tie or with none seen); elimination_accuracy
-- from inputs, for the conjunction tasks only (start from all 2 * n_dims literals, delete
-- each literal a positive example falsifies, predict +1 iff every kept literal holds; null
-- for other tasks). These are the baselines of attnstore eval (attnstore/train.py).
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
-- Grain: point.
-- Columns:
--   run_id, task, point,
--   n_samples            prompts
--   positive_share       share of labels y = +1 at this point
--   model_accuracy       share of the model's predictions that are right
--   majority_accuracy    the same for the majority baseline
--   elimination_accuracy the same for the elimination algorithm (conjunctions only)
--   model_vs_best        model_accuracy minus the better baseline
with
run as (
    select run_id, task, task in ('conjunction', 'teach_conjunction') as eliminates,
    from runs
    where run_id = $run_id
),

labels as (
    select sample, point, y,
    from inputs
    where run_id = $run_id
),

majority as (
    select
        sample,
        point,
        y,
        coalesce(
            sum(y) over (
                partition by sample order by point
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as seen,
        case when seen > 0 then 1 else -1 end as pred,
    from labels
),

bits as (
    select
        i.sample,
        i.point,
        i.y,
        unnest(range(len(i.x))) as literal,
        i.x[literal + 1] as value,
    from inputs as i
    join run as r using (run_id)
    where r.eliminates
),

-- A positive example with x_j = v falsifies the literal (j, -v); keep the first such point.
falsified as (
    select sample, literal, -value as sign, min(point) as at_point,
    from bits
    where y > 0
    group by all
),

-- At point i, the literal violated by x_ij is (j, -x_ij); +1 iff each was deleted before i.
elimination as (
    select
        b.sample,
        b.point,
        any_value(b.y) as y,
        case
            when bool_and(coalesce(f.at_point < b.point, false)) then 1 else -1
        end as pred,
    from bits as b
    left join falsified as f
        on f.sample = b.sample and f.literal = b.literal and f.sign = -b.value
    group by b.sample, b.point
),

per_point as (
    select
        p.point,
        count(*) as n_samples,
        avg((p.y > 0)::int) as positive_share,
        avg(p.correct::int) as model_accuracy,
        avg((m.pred = m.y)::int) as majority_accuracy,
        avg((e.pred = e.y)::int) as elimination_accuracy,
    from predictions as p
    join majority as m using (sample, point)
    left join elimination as e using (sample, point)
    where p.run_id = $run_id
    group by p.point
)

select
    r.run_id,
    r.task,
    p.point,
    p.n_samples,
    p.positive_share,
    p.model_accuracy,
    p.majority_accuracy,
    p.elimination_accuracy,
    p.model_accuracy - greatest(p.majority_accuracy, p.elimination_accuracy)
        as model_vs_best,
from per_point as p
cross join run as r
order by p.point
