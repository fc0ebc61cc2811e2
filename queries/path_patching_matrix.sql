-- path_patching_matrix: what each sender head's output restores through one receiver's input.
--
-- The paths of a path patch (attnstore patch --path), one row per (sender, receiver): the
-- sender's clean output reaches only the receiver head's queries, keys or values
-- (patch_target), and restored_share (patch_head_effects) is the share of the corruption's
-- change of the logits that comes back. Read as a matrix: senders (layer, head) down,
-- receivers (receiver_layer, receiver_head) across. Every pair of $run_id's heads whose
-- receiver is downstream (a later layer) has a row; a pair the patch did not measure, or no
-- patch ($patch_id null, or a patch of another run), has null patch columns.
--
-- Parameters:
--   $run_id = latest_run       the run [default: the latest run in the store]
--   $patch_id: str = null      the patch (attnstore patch prints its id); null: none
-- Grain: layer, head, receiver_layer, receiver_head.
-- Columns:
--   run_id, layer, head, receiver_layer, receiver_head,
--   patch_id, corruption, corruption_k, patch_target, positions,
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

pairs as (
    select
        s.run_id,
        s.layer,
        s.head,
        r.layer as receiver_layer,
        r.head as receiver_head,
    from heads as s
    join heads as r on r.layer > s.layer
),

effects as (
    select *,
    from patch_head_effects
    where patch_id = $patch_id and run_id = $run_id and kind = 'path'
)

select
    p.run_id,
    p.layer,
    p.head,
    p.receiver_layer,
    p.receiver_head,
    e.patch_id,
    e.corruption,
    e.corruption_k,
    e.patch_target,
    e.positions,
    e.n_moved_prompts,
    e.restored_share,
    e.restored_share_lower,
    e.restored_share_upper,
from pairs as p
left join effects as e using (layer, head, receiver_layer, receiver_head)
order by p.layer, p.head, p.receiver_layer, p.receiver_head
