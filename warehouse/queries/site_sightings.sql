-- Every sighting, oldest capture first per paper: the site's charts of rank and upvotes over
-- time, placed at the moment each page's figures were true; only the papers of $ids unless it
-- is NULL.
SELECT paper_id, digest_date, captured_at, rank, upvotes
FROM sightings
WHERE $ids IS NULL OR paper_id IN (SELECT unnest($ids))
ORDER BY paper_id, captured_at, page_id;
