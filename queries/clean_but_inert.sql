-- clean_but_inert: heads whose rows cluster cleanly but whose change costs no accuracy.
--
-- A head can split its query rows into clean clusters (head_fits' quality, in each analysis
-- of the run of $view) and still carry nothing the prediction needs: changing it (an
-- intervention of the run, attnstore intervene) moves the accuracy of the last half of the
-- points by at most $max_effect, and the data say so: the head is inert when the whole 95%
-- interval of late_delta_accuracy (a paired bootstrap over prompts, head_effect_summary)
-- lies within -$max_effect .. $max_effect, not when the estimate alone does. A head with no
-- interval (a run of one prompt) is not called inert. Clean structure is not evidence of
-- use; these heads say so.
-- A clean head not yet measured (no intervention of $method, $target) is listed with null
-- intervention columns: 'attnstore intervene' decides it.
--
-- Parameters:
--   $analysis_id: str = null  one analysis of the run; null: every analysis (of $view)
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $method: str{zero,mean,resample,knockout} = 'zero'  the intervention's method
--   $target: str = null        one target ('z' or a knockout key class); null: every target
--   $view: str{raw,shared_keys,per_example} = null  the analyses' row view; null: every view
--   $query_kind: str{x,y} = 'x'  query rows of the clusters
--   $min_quality: float[-1..1] = 0.5  a clean head's least quality
--   $max_effect: float[0..1] = 0.01  the largest |late_delta_accuracy| its interval reaches
-- Thresholds: min_quality, max_effect.
-- Grain: intervention_id, analysis_id, layer, head.
-- Columns:
--   intervention_id, method, target, analysis_id, view, layer, head,
--   quality              mean over samples of the best silhouette, 0 where none
--   modal_k              the k chosen most often among the clustered samples (the smaller on
--                        ties; null where none was clustered)
--   late_delta_accuracy  mean over the last half of the points (n_points // 2 on) of
--                        delta_accuracy
--   late_delta_accuracy_lower, late_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   late_delta_logit     mean over the last half of the points of delta_logit
-- quality and modal_k are head_fits', the late_* columns head_effect_summary's.
with
fits as (
    select analysis_id, view, layer, head, quality, modal_k,
    from head_fits
    where run_id = $run_id and ($view is null or view = $view)
        and ($analysis_id is null or analysis_id = $analysis_id) and query_kind = $query_kind
),

effects as (
    select
        intervention_id,
        method,
        target,
        layer,
        head,
        late_delta_accuracy,
        late_delta_accuracy_lower,
        late_delta_accuracy_upper,
        late_delta_logit,
    from head_effect_summary
    where run_id = $run_id and method = $method and ($target is null or target = $target)
)

select
    e.intervention_id,
    e.method,
    e.target,
    f.analysis_id,
    f.view,
    f.layer,
    f.head,
    f.quality,
    f.modal_k,
    e.late_delta_accuracy,
    e.late_delta_accuracy_lower,
    e.late_delta_accuracy_upper,
    e.late_delta_logit,
from fits as f
left join effects as e using (layer, head)
where f.quality >= $min_quality
    and (
        e.intervention_id is null
        or (
            e.late_delta_accuracy_lower >= -$max_effect
            and e.late_delta_accuracy_upper <= $max_effect
        )
    )
order by e.method, e.target, e.intervention_id, f.view, f.analysis_id, f.quality desc,
    f.layer, f.head
