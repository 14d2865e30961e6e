-- Every sighting, oldest first per paper: the site's charts of rank and upvotes over time.
SELECT paper_id, digest_date, seen_at, rank, upvotes
FROM sightings
ORDER BY paper_id, seen_at, page_id;
