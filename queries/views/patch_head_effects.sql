-- patch_head_effects: per patch and patched head (or path), the share of the corruption's
-- change of logit that the patch restores, with its 95% interval.
--
-- patch_effects (attnstore patch) pooled over the points and prompts of each head or path:
-- restored_share = sum (patched - corrupted) * (clean - corrupted) / sum (clean - corrupted)^2
-- over every point of every prompt, the least-squares ratio of the change the patch brings
-- back to the change the corruption made (at one point it is that point's normalised_effect,
-- (patched - corrupted) / (clean - corrupted)): 0 restores nothing, 1 the clean logits. Only
-- prompts whose logits the corruption moved count. The interval is a paired bootstrap over
-- those prompts (attnstore/stats.py's draws, bootstrap_draws; each replicate's ratio of its
-- drawn sums; bootstrap_interval); one prompt gives no interval (null). The draws are made
-- once per number of prompts, not once per head.
--
-- Parameters: none.
-- Grain: patch_id, layer, head, receiver_layer, receiver_head.
-- Columns:
--   patch_id, run_id, corruption, corruption_k, kind, patch_target, positions,
--   layer, head, receiver_layer, receiver_head,
--   n_moved_prompts      prompts whose logits the corruption moved (the bootstrap's
--                        prompts)
--   restored_share       sum of (patched - corrupted)(clean - corrupted) over sum of
--                        (clean - corrupted)^2, points and prompts pooled: 0 nothing restored,
--                        1 the clean logits
--   restored_share_lower, restored_share_upper   its 95% interval (paired bootstrap over
--                        prompts)
with
per_prompt as (
    select
        patch_id,
        layer,
        head,
        receiver_layer,
        receiver_head,
        sample,
        fsum((patched_logit::double - corrupted_logit) * (clean_logit::double - corrupted_logit))
            as restored,
        fsum((clean_logit::double - corrupted_logit) ^ 2) as moved,
    from patch_effects
    group by patch_id, layer, head, receiver_layer, receiver_head, sample
),

numbered as (
    select
        *,
        row_number() over (
            partition by patch_id, layer, head, receiver_layer, receiver_head order by sample
        ) - 1 as prompt_index,
        count(*) over (partition by patch_id, layer, head, receiver_layer, receiver_head)
            as n_prompts,
    from per_prompt
    where moved > 0
),

sizes as (
    select distinct n_prompts,
    from numbered
),

draws as (
    select s.n_prompts, d.replicate, d.prompt_index, d.draws,
    from sizes as s, lateral bootstrap_draws(s.n_prompts) as d
),

replicates as (
    select
        p.patch_id,
        p.layer,
        p.head,
        p.receiver_layer,
        p.receiver_head,
        d.replicate,
        any_value(p.n_prompts) as n_prompts,
        fsum(d.draws * p.restored) / fsum(d.draws * p.moved) as restored_share,
    from numbered as p
    join draws as d on d.n_prompts = p.n_prompts and d.prompt_index = p.prompt_index
    group by p.patch_id, p.layer, p.head, p.receiver_layer, p.receiver_head, d.replicate
),

intervals as (
    select
        patch_id,
        layer,
        head,
        receiver_layer,
        receiver_head,
        bootstrap_interval(restored_share, n_prompts) as restored_share,
    from replicates
    group by patch_id, layer, head, receiver_layer, receiver_head
),

estimates as (
    select
        patch_id,
        layer,
        head,
        receiver_layer,
        receiver_head,
        count(*) as n_prompts,
        fsum(restored) / fsum(moved) as restored_share,
    from numbered
    group by patch_id, layer, head, receiver_layer, receiver_head
)

select
    e.patch_id,
    p.run_id,
    p.corruption,
    p.corruption_k,
    p.kind,
    p.patch_target,
    p.positions,
    e.layer,
    e.head,
    e.receiver_layer,
    e.receiver_head,
    e.n_prompts as n_moved_prompts,
    e.restored_share,
    i.restored_share.lower as restored_share_lower,
    i.restored_share.upper as restored_share_upper,
from estimates as e
join intervals as i using (patch_id, layer, head, receiver_layer, receiver_head)
join patches as p using (patch_id)
