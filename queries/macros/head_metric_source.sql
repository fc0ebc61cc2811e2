-- head_metric_source: the source of a per-head metric named by a query's parameter.
--
-- Looks the name up in known_head_metrics(); an unknown name is refused with an error naming
-- the known ones (in alphabetical order), so a query that takes a metric checks it in one call.
--
-- Arguments:
--   name                 a metric's name (VARCHAR)
-- Returns: 'summary' or 'routing' (VARCHAR); an error for another name.
create macro head_metric_source(name) as
    case
        when len([k for k in known_head_metrics() if k.metric = name]) = 0 then error(
            'unknown metric ''' || name || '''; known: '
            || array_to_string(list_sort([k.metric for k in known_head_metrics()]), ', ')
        )
        else [k.source for k in known_head_metrics() if k.metric = name][1]
    end
