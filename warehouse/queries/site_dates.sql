-- Every digest date the site has a page for: dates with a loaded page, and dates a daily digest
-- was mailed for (a run on a day with no list of its own still mailed trending and late papers);
-- newest first, with when its data last changed.
SELECT digest_date, max(changed_at) AS last_fetched_at
FROM (
    SELECT digest_date, fetched_at AS changed_at FROM pages
    WHERE digest_date IS NOT NULL AND n_entries > 0
    UNION ALL
    SELECT digest_date, delivered_at FROM digests
    WHERE digest_key = strftime(digest_date, '%Y-%m-%d')
)
GROUP BY digest_date
ORDER BY digest_date DESC;
