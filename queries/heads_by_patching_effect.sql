-- heads_by_patching_effect: the heads of an activation patch, ranked by what they restore.
--
-- Each head's restored_share (patch_head_effects): patching the head's z (q, k or v) from the
-- clean prompt into the corrupted one brings back that share of the change the corruption
-- made to the logits, points and prompts pooled; 1 is the clean logits. The rank is by the
-- estimate; read two heads whose intervals overlap as not told apart. Every layer x head of
-- $run_id has a row; without a patch ($patch_id null, or a patch of another run) the patch
-- columns are null. A path patch's rows are in path_patching_matrix.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $patch_id: str = null      the patch (attnstore patch prints its id); null: none
--   $top: int[1..] = null      keep the first $top ranks; null: every head
-- Grain: layer, head.
-- Columns:
--   rank                 1 = the head that restores the most (null restored_share last)
--   run_id, layer, head, patch_id, corruption, corruption_k, patch_target, positions,
--   n_moved_prompts      prompts whose logits the corruption moved (the bootstrap's
--                        prompts)
--   restored_share       sum of (patched - corrupted)(clean - corrupted) over sum of
--                        (clean - corrupted)^2, points and prompts pooled: 0 nothing restored,
--                        1 the clean logits
--   restored_share_lower, restored_share_upper   its 95% interval (paired bootstrap over
--                        prompts)
with
heads as (
    select r.run_id, l.layer::smallint as layer, h.head::smallint as head,
    from runs as r, range(r.n_layers) as l(layer), range(r.n_heads) as h(head)
    where r.run_id = $run_id
),

effects as (
    select *,
    from patch_head_effects
    where patch_id = $patch_id and run_id = $run_id and kind = 'activation'
),

ranked as (
    select
        row_number() over (
            order by rank_key(e.restored_share) desc nulls last, h.layer, h.head
        ) as rank,
        h.run_id,
        h.layer,
        h.head,
        e.patch_id,
        e.corruption,
        e.corruption_k,
        e.patch_target,
        e.positions,
        e.n_moved_prompts,
        e.restored_share,
        e.restored_share_lower,
        e.restored_share_upper,
    from heads as h
    left join effects as e using (layer, head)
)

select
    rank,
    run_id,
    layer,
    head,
    patch_id,
    corruption,
    corruption_k,
    patch_target,
    positions,
    n_moved_prompts,
    restored_share,
    restored_share_lower,
    restored_share_upper,
from ranked
where $top is null or rank <= $top
order by rank
