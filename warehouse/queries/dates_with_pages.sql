-- Digest dates in [start, end] that have at least one loaded page with at least $min_entries
-- entries (an empty day's `[]` counts when $min_entries = 0).
SELECT DISTINCT digest_date
FROM pages
WHERE digest_date BETWEEN $start AND $end AND n_entries >= $min_entries
ORDER BY digest_date;
