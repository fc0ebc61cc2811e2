-- se_interval: an estimate's 95% interval from its standard error.
--
-- estimate ± z * se with z = 1.959963984540054, the 95% normal quantile
-- (attnstore.stats.normal_interval's z for confidence 0.95). The one place the queries hold
-- z: normal_interval (an aggregate over per-prompt values) and the queries that combine
-- standard errors (a difference of two independent means: se = sqrt(se_a^2 + se_b^2)) call it.
--
-- Arguments:
--   estimate             the estimate (DOUBLE)
--   se                   its standard error (DOUBLE); null gives no interval
-- Returns: a STRUCT (lower DOUBLE, upper DOUBLE), both null where se is null.
create macro se_interval(estimate, se) as {
    'lower': estimate - 1.959963984540054 * se,
    'upper': estimate + 1.959963984540054 * se,
}
