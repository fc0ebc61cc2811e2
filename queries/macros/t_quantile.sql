-- t_quantile: the 97.5% quantile of Student's t with df degrees of freedom.
--
-- The quantiles for df 1..30 are held here (scipy.stats.t.ppf(0.975, df), 6 decimals; a test
-- holds them equal); beyond 30 degrees of freedom the normal 1.959963984540054 (within 4% of
-- t). t_interval multiplies a standard error by it.
--
-- Arguments:
--   df                   degrees of freedom (INTEGER); null or below 1 gives null
-- Returns: a DOUBLE, or null.
create macro t_quantile(df) as
    case
        when df is null or df < 1 then null
        when df <= 30 then [
            12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624,
            2.306004, 2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787,
            2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614,
            2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407,
            2.045230, 2.042272
        ][df]::double
        else 1.959963984540054
    end
