-- Idempotency: which of these bytes ($shas) were loaded before, and for which digest date.
-- (The caller matches on the date too: an empty day's `[]` is identical for every weekend.)
-- Oldest first: the caller keeps the first load of each (bytes, date).
SELECT content_sha256, digest_date, page_id, location, n_entries, n_rejected
FROM pages
WHERE content_sha256 IN (SELECT unnest($shas))
ORDER BY page_id;
