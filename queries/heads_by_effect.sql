-- heads_by_effect: heads ranked by the accuracy they carry, next to how they cluster and route.
--
-- Each intervention of the run (attnstore intervene: one per method and knockout target)
-- ranks the heads by late_delta_accuracy, the change of accuracy over the last half of the
-- points when the head is changed: the most negative (the most accuracy carried) first.
-- Beside it, the head's cluster quality (head_fits, each analysis of the run of $view) and
-- its label routing over the same points (head_label_routing: as heads_by_label_routing
-- computes it with min_point n_points // 2): does a head whose rows cluster cleanly, or route
-- to positive labels, carry the accuracy? A head of a run with no intervention (of $method,
-- $target) yet is listed once per analysis with null intervention columns: 'attnstore
-- intervene' measures it. Each effect has its 95% interval beside it: a paired bootstrap over
-- prompts (head_effect_summary; attnstore/stats.py); the rank is by the estimate, so read two
-- heads whose intervals overlap as not told apart.
--
-- Parameters:
--   $analysis_id: str = null  one analysis of the run; null: every analysis (of $view)
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $method: str{zero,mean,resample,knockout} = null  one method; null: every method
--   $target: str = null        one target ('z' or a knockout key class); null: every target
--   $view: str{raw,shared_keys,per_example} = null  the analyses' row view; null: every view
--   $query_kind: str{x,y} = 'x'  query rows of the cluster and routing columns
--   $top: int[1..] = null      keep the first $top ranks of each intervention; null: all
-- Grain: intervention_id, analysis_id, layer, head.
-- Columns:
--   rank                 1 = the head whose change costs the most accuracy (late points)
--   intervention_id, method, target, analysis_id, view, layer, head,
--   late_delta_accuracy  mean over the last half of the points (n_points // 2 on) of
--                        delta_accuracy
--   late_delta_accuracy_lower, late_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   mean_delta_accuracy  mean over points of delta_accuracy
--   mean_delta_accuracy_lower, mean_delta_accuracy_upper   its 95% interval (paired
--                        bootstrap over prompts)
--   late_delta_logit     mean over the last half of the points of delta_logit
--   late_delta_logit_lower, late_delta_logit_upper   its 95% interval (paired bootstrap
--                        over prompts)
--   quality              mean over samples of the best silhouette, 0 where none
--   modal_k              the k chosen most often among the clustered samples (the smaller on
--                        ties; null where none was clustered)
--   modal_k_share        share of all samples that chose modal_k (0 where none was clustered)
--   mean_nmi_y           mean normalised mutual information of the clusters with y
--   mean_mass_y          mean attention mass on y tokens (labels) of the query rows counted
--   positive_mass_share  share of the y-token mass on the y tokens of positive labels, pooled
--                        over the query rows counted
with
effects as (
    select *,
    from head_effect_summary
    where run_id = $run_id
        and ($method is null or method = $method)
        and ($target is null or target = $target)
),

fits as (
    select analysis_id, view, layer, head, quality, modal_k, modal_k_share, mean_nmi_y,
    from head_fits
    where run_id = $run_id and ($view is null or view = $view)
        and ($analysis_id is null or analysis_id = $analysis_id) and query_kind = $query_kind
),

routing as (
    select layer, head, mean_mass_y, positive_mass_share,
    from head_label_routing
    where run_id = $run_id and query_kind = $query_kind
),

ranked as (
    select
        f.*,
        e.intervention_id,
        e.method,
        e.target,
        e.late_delta_accuracy,
        e.late_delta_accuracy_lower,
        e.late_delta_accuracy_upper,
        e.mean_delta_accuracy,
        e.mean_delta_accuracy_lower,
        e.mean_delta_accuracy_upper,
        e.late_delta_logit,
        e.late_delta_logit_lower,
        e.late_delta_logit_upper,
        row_number() over (
            partition by e.intervention_id, f.analysis_id
            order by rank_key(e.late_delta_accuracy), rank_key(e.mean_delta_accuracy),
                f.layer, f.head
        ) as rank,
    from fits as f
    left join effects as e using (layer, head)
)

select
    r.rank,
    r.intervention_id,
    r.method,
    r.target,
    r.analysis_id,
    r.view,
    r.layer,
    r.head,
    r.late_delta_accuracy,
    r.late_delta_accuracy_lower,
    r.late_delta_accuracy_upper,
    r.mean_delta_accuracy,
    r.mean_delta_accuracy_lower,
    r.mean_delta_accuracy_upper,
    r.late_delta_logit,
    r.late_delta_logit_lower,
    r.late_delta_logit_upper,
    r.quality,
    r.modal_k,
    r.modal_k_share,
    r.mean_nmi_y,
    g.mean_mass_y,
    g.positive_mass_share,
from ranked as r
left join routing as g using (layer, head)
where $top is null or r.rank <= $top
order by r.method, r.target, r.intervention_id, r.view, r.analysis_id, r.rank
