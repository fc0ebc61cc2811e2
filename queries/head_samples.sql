-- head_samples: which prompt to show a head on: its typical sample, its cleanest, its least clean.
--
-- A head's xy_silhouette in one sample is the mean of the best silhouettes of its x and y
-- query rows there (0 for a kind that could not be clustered, as quality counts it). Shown
-- on its cleanest sample a head looks its best, which is cherry-picking; its typical sample,
-- the one whose xy_silhouette is the head's median over samples (the lower middle one for an
-- even count, so the median is a sample's), shows it as it usually is. Ties go to the lowest
-- sample. The report opens each head on its typical sample,
-- the cleanest and least clean a click away, and attnstore run draws the typical one.
--
-- Parameters:
--   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
--   $run_id = latest_run       the run of the default analysis [default: the latest run]
--   $view: str{raw,shared_keys,per_example} = null  the default analysis's view; null: any
--   $layer: int[0..] = null    one layer; null: every layer
--   $head: int[0..] = null     one head; null: every head
-- Grain: layer, head.
-- Columns:
--   analysis_id, layer, head,
--   n_samples            samples of the head
--   median_xy_silhouette the median over samples of the head's xy_silhouette (the lower
--                        middle value for an even count)
--   typical_sample       the sample whose xy_silhouette is median_xy_silhouette
--   typical_xy_silhouette its xy_silhouette
--   cleanest_sample      the sample of the highest xy_silhouette
--   cleanest_xy_silhouette its xy_silhouette
--   least_clean_sample   the sample of the lowest xy_silhouette
--   least_clean_xy_silhouette its xy_silhouette
with
per_sample as (
    select
        analysis_id,
        layer,
        head,
        sample,
        avg(coalesce(best_silhouette, 0)) as xy_silhouette,
    from fits
    where analysis_id = $analysis_id
        and ($layer is null or layer = $layer)
        and ($head is null or head = $head)
    group by analysis_id, layer, head, sample
),

with_median as (
    select
        *,
        quantile_disc(xy_silhouette, 0.5) over (partition by layer, head)
            as median_xy_silhouette,
    from per_sample
),

ranked as (
    select
        *,
        row_number() over (
            partition by layer, head
            order by rank_key(abs(xy_silhouette - median_xy_silhouette)), sample
        ) as typical_rank,
        row_number() over (
            partition by layer, head order by xy_silhouette desc, sample
        ) as cleanest_rank,
        row_number() over (
            partition by layer, head order by xy_silhouette, sample
        ) as least_clean_rank,
    from with_median
)

select
    analysis_id,
    layer,
    head,
    count(*) as n_samples,
    any_value(median_xy_silhouette) as median_xy_silhouette,
    any_value(sample) filter (where typical_rank = 1) as typical_sample,
    any_value(xy_silhouette) filter (where typical_rank = 1) as typical_xy_silhouette,
    any_value(sample) filter (where cleanest_rank = 1) as cleanest_sample,
    any_value(xy_silhouette) filter (where cleanest_rank = 1) as cleanest_xy_silhouette,
    any_value(sample) filter (where least_clean_rank = 1) as least_clean_sample,
    any_value(xy_silhouette) filter (where least_clean_rank = 1) as least_clean_xy_silhouette,
from ranked
group by analysis_id, layer, head
order by layer, head
