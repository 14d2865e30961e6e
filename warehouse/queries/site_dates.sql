-- Every digest date with a loaded page, and when its data last changed (newest first).
SELECT digest_date, max(fetched_at) AS last_fetched_at
FROM pages
WHERE digest_date IS NOT NULL AND page_id IN (SELECT DISTINCT page_id FROM sightings)
GROUP BY digest_date
ORDER BY digest_date DESC;
