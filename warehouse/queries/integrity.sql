-- Each row is one kind of problem with a count; `paperdigest check` wants every count at 0.
SELECT 'sightings without their page' AS problem, count(*) AS n
FROM sightings s ANTI JOIN pages p USING (page_id)
UNION ALL
SELECT 'sightings without their paper', count(*)
FROM sightings s ANTI JOIN papers p USING (paper_id)
UNION ALL
SELECT 'pages without their archived bytes', count(*)
FROM pages p ANTI JOIN page_archive a USING (page_id)
UNION ALL
SELECT 'pages whose row count does not match their sightings', count(*)
FROM pages p
LEFT JOIN (SELECT page_id, count(*) AS n FROM sightings GROUP BY page_id) s USING (page_id)
WHERE p.n_entries <> COALESCE(s.n, 0)
UNION ALL
SELECT 'pages whose reject count does not match their rejects', count(*)
FROM pages p
LEFT JOIN (SELECT page_id, count(*) AS n FROM rejects GROUP BY page_id) r USING (page_id)
WHERE p.n_rejected <> COALESCE(r.n, 0)
UNION ALL
SELECT 'papers never sighted', count(*)
FROM papers p ANTI JOIN sightings s USING (paper_id)
UNION ALL
SELECT 'sends marked sent without a Message-ID', count(*)
FROM sends WHERE state = 'sent' AND (message_id IS NULL OR message_id = '')
UNION ALL
SELECT 'pages or sightings without a capture time', count(*)
FROM (SELECT 1 FROM pages WHERE captured_at IS NULL
      UNION ALL SELECT 1 FROM sightings WHERE captured_at IS NULL);
