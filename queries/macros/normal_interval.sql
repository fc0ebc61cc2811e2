-- normal_interval: a mean with its interval from the standard error, over a group's rows.
--
-- An aggregate, like avg(value): the mean of the group's per-prompt values ± z times its
-- standard error, stddev_samp / sqrt(n) (exact for a mean), z the 95% normal quantile
-- (se_interval), as attnstore.stats.normal_interval computes it. The interval of choice
-- where a bootstrap per group would cost too much (one per head and point). With one prompt
-- there is no interval.
--
-- Arguments:
--   value                one per-prompt value per row (a paired difference)
-- Returns: a STRUCT (lower DOUBLE, upper DOUBLE), both null for fewer than two rows.
create macro normal_interval(value) as
    se_interval(avg(value), stddev_samp(value) / sqrt(count(value)))
