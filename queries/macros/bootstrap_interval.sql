-- bootstrap_interval: the percentile interval of a group's bootstrap replicate means.
--
-- An aggregate, over one row per replicate (bootstrap_draws): the (1 - confidence) / 2 and
-- (1 + confidence) / 2 quantiles of the replicate means, linearly interpolated between order
-- statistics (quantile_cont, as numpy's quantile), as attnstore.stats.paired_bootstrap
-- computes them. With one prompt there is no interval: every replicate is that prompt, and a
-- zero-width interval would claim a certainty one prompt cannot give.
--
-- Arguments:
--   replicate_mean       the mean of one replicate's drawn per-prompt values
--   n_prompts            the prompts the replicates draw from (the same on every row)
--   confidence := 0.95   the nominal coverage (attnstore.stats.CONFIDENCE)
-- Returns: a STRUCT (lower DOUBLE, upper DOUBLE), both null for one prompt.
create macro bootstrap_interval(replicate_mean, n_prompts, confidence := 0.95) as
    case
        when max(n_prompts) > 1 then {
            'lower': quantile_cont(replicate_mean, (1 - confidence) / 2),
            'upper': quantile_cont(replicate_mean, (1 + confidence) / 2),
        }
        else {'lower': null::double, 'upper': null::double}
    end
