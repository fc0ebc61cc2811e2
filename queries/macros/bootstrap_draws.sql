-- bootstrap_draws: which prompts each bootstrap replicate draws, and how often.
--
-- A table macro. The prompts of an estimate are numbered 0 .. n_prompts - 1 in the order of
-- their sample; replicate r draws n_prompts of them with replacement, draw j taking prompt
-- mix32(mix32(mix32(seed) ^ r) ^ j) % n_prompts (no random number generator: the same draws
-- in every DuckDB, and in attnstore.stats.resample_indices, the same definition in numpy).
-- A view joins its per-prompt values on prompt_index, sums draws * value per replicate, and
-- takes bootstrap_interval of the replicate means (the percentile interval):
--     from per_prompt as p, lateral bootstrap_draws(p.n_prompts) as d
--     where d.prompt_index = p.prompt_index
--
-- Arguments:
--   n_prompts            prompts of the estimate, at least 1
--   replicates := 1000   bootstrap replicates (attnstore.stats.BOOTSTRAP_REPLICATES)
--   seed := 0            the hash's seed (attnstore.stats.BOOTSTRAP_SEED)
-- Returns: rows (replicate, prompt_index, draws): draws >= 1 times prompt_index was drawn;
-- a prompt not drawn has no row.
create macro bootstrap_draws(n_prompts, replicates := 1000, seed := 0) as table
    with
    streams as (
        select replicate, mix32(xor(mix32(seed), replicate)) as h,
        from range(replicates) as r(replicate)
    ),

    picks as (
        select replicate, mix32(xor(h, draw)) % n_prompts as prompt_index,
        from streams, range(n_prompts) as d(draw)
    )

    select replicate, prompt_index, count(*) as draws,
    from picks
    group by replicate, prompt_index
