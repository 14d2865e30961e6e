-- Idempotency: the same bytes for the same digest date were already loaded.
-- (Keyed on the date too: an empty day's `[]` is identical for every weekend.)
-- The caller takes the first row. No LIMIT 1: DuckDB plans that Top-N as a second scan of
-- `pages` joined back to the first, ~2× the time, and at most one row matches anyway.
SELECT page_id, n_entries, n_rejected
FROM pages
WHERE content_sha256 = $sha AND digest_date IS NOT DISTINCT FROM $digest_date
ORDER BY page_id;
