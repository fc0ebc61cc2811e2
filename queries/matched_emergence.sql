-- matched_emergence: each head's metric over training across training seeds, heads matched.
--
-- head_emergence follows one training (a lineage); its head indices are its own, and those of
-- another training seed name other heads. Here every lineage of the chosen runs is read in the
-- head indices of a reference lineage ($lineage): the reference as it is, each other through
-- the latest stored matching between one of its runs and one of the reference's, either way
-- round (attnstore match; latest_matchings): head identity is stable within a lineage, so
-- one matching of two trainings' final runs names the heads of all their steps. At each
-- training step and head (layer, head: the reference's indices), the trainings' values (each
-- the mean of its runs at the step, as head_emergence's value) give the mean over seeds,
-- their min and max, and the standard error of that mean over seeds with its 95% interval
-- (null with one training). A
-- lineage with no matching to the reference (another shape, or never matched) is left out
-- and named in left_out. The metric is read as head_emergence reads it: a head_summary metric
-- from the latest analysis of each run with $view, a label routing metric with no analysis.
--
-- Parameters:
--   $metric: str = 'quality'   a per-head metric, as head_emergence accepts; another name is
--                              refused
--   $view: str{raw,shared_keys,per_example} = 'shared_keys'  the analyses' row view
--   $lineage: str = null       the reference lineage (run_lineages), whose head indices are
--                              kept; null: the chosen lineage of the least train_seed
--   $task: str = null          only the runs of this task; null: every task
--   $seed: int = null          only the runs of this prompt seed (runs.seed); null: every
--                              seed
--   $query_kind: str{x,y} = null  the query rows; null: both
-- Grain: layer, head, query_kind, train_step.
-- Columns:
--   reference_lineage    the lineage whose head indices the rows use
--   layer, head, query_kind,
--   metric               the metric, as known_head_metrics() names it
--   train_step,
--   n_seeds              trainings (lineages) with a value at this step: the reference and
--                        those matched to it
--   train_seeds          their training seeds, sorted (unknown ones left out)
--   matched_heads        per training, sorted by lineage: its lineage, train_seed, its own
--                        head index read as this head, and its value
--   seed_mean            the mean over trainings of each one's value at the step
--   seed_min, seed_max   the least and the greatest of them
--   seed_se              the standard error of seed_mean over trainings (sample standard
--                        deviation / sqrt(n_seeds)); null with one training
--   seed_lower, seed_upper  seed_mean's 95% interval over trainings, ± Student's t (n_seeds - 1
--                        degrees of freedom: 4.30 standard errors for 3 seeds); null with one
--                        training
--   left_out             lineages of the chosen runs with no stored matching to the reference,
--                        left out (attnstore match makes one)
with
-- the metric's source; an unknown name is refused, naming the known ones
chosen_metric as (select head_metric_source($metric) as source),

chosen_runs as (
    select l.run_id, l.train_step, l.lineage, r.train_seed,
    from run_lineages as l
    join runs as r using (run_id)
    where l.train_step is not null
        and ($task is null or l.task = $task) and ($seed is null or l.seed = $seed)
),

lineages as (
    select lineage, any_value(train_seed) as train_seed,  -- one training: one seed
    from chosen_runs
    group by lineage
),

reference as (
    select coalesce(
        $lineage,
        (select lineage from lineages order by train_seed nulls last, lineage limit 1)
    ) as lineage
),

-- each other lineage's heads as the reference names them, either way round
renames as (
    select m.lineage_b as lineage, h.layer, h.head_b as head, h.head_a as renamed,
    from latest_matchings as m
    join head_matches as h using (match_id)
    where h.matched and m.lineage_recency = 1 and m.lineage_a <> m.lineage_b
        and m.lineage_a = (from reference)
    union all
    select m.lineage_a as lineage, h.layer, h.head_a as head, h.head_b as renamed,
    from latest_matchings as m
    join head_matches as h using (match_id)
    where h.matched and m.lineage_recency = 1 and m.lineage_a <> m.lineage_b
        and m.lineage_b = (from reference)
),

-- a summary metric from the latest analysis of each run with $view; a routing one needs none
run_values as (
    select run_id, layer, head, query_kind, value,
    from head_metric_estimates
    where metric = $metric and source = (select source from chosen_metric)
        and (source = 'routing' or view = $view)
        and ($query_kind is null or query_kind = $query_kind)
),

per_lineage as (
    select
        r.lineage,
        any_value(r.train_seed) as train_seed,
        r.train_step,
        v.layer,
        v.head,
        v.query_kind,
        avg(v.value) as value,
    from run_values as v
    join chosen_runs as r using (run_id)
    group by r.lineage, r.train_step, v.layer, v.head, v.query_kind
),

named as (
    select
        p.lineage,
        p.train_seed,
        p.train_step,
        p.layer,
        coalesce(n.renamed, p.head) as head,
        p.head as own_head,
        p.query_kind,
        p.value,
    from per_lineage as p
    left join renames as n on n.lineage = p.lineage and n.layer = p.layer and n.head = p.head
    where p.lineage = (from reference) or n.renamed is not null
),

left_out as (
    select coalesce(list(lineage order by lineage), []) as lineages,
    from lineages
    where lineage <> (from reference) and lineage not in (select lineage from renames)
),

per_step as (
    select
        layer,
        head,
        query_kind,
        train_step,
        count(*) as n_seeds,
        coalesce(list(distinct train_seed order by train_seed) filter (
            where train_seed is not null
        ), []) as train_seeds,
        list(
            {'lineage': lineage, 'train_seed': train_seed, 'head': own_head, 'value': value}
            order by lineage
        ) as matched_heads,
        avg(value) as seed_mean,
        min(value) as seed_min,
        max(value) as seed_max,
        stddev_samp(value) / sqrt(count(*)) as seed_se,
    from named
    group by layer, head, query_kind, train_step
)

select
    (from reference) as reference_lineage,
    layer,
    head,
    query_kind,
    $metric as metric,
    train_step,
    n_seeds,
    train_seeds,
    matched_heads,
    seed_mean,
    seed_min,
    seed_max,
    seed_se,
    t_interval(seed_mean, seed_se, n_seeds - 1).lower as seed_lower,
    t_interval(seed_mean, seed_se, n_seeds - 1).upper as seed_upper,
    (select lineages from left_out) as left_out,
from per_step
order by layer, head, query_kind, train_step
