-- Days in [start, end] fully fetched and loaded from $source.
SELECT DISTINCT digest_date FROM day_loads
WHERE digest_date BETWEEN $start AND $end AND source = $source;
