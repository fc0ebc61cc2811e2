-- t_interval: a mean's 95% interval over few independent replicates (training seeds).
--
-- estimate ± t_quantile(df) * se, df = n - 1 for a mean of n replicates: the multiplier is
-- 12.71 for 2 replicates, 4.30 for 3 and 2.78 for 5, where se_interval's normal 1.96 would
-- give intervals far too narrow to cover the mean 95% of the time.
--
-- Arguments:
--   estimate             the mean (DOUBLE)
--   se                   its standard error (DOUBLE); null gives no interval
--   df                   degrees of freedom (INTEGER); null or below 1 gives no interval
-- Returns: a STRUCT (lower DOUBLE, upper DOUBLE), both null where there is no interval.
create macro t_interval(estimate, se, df) as {
    'lower': estimate - t_quantile(df) * se,
    'upper': estimate + t_quantile(df) * se,
}
