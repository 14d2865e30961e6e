-- The newest pages with their capture times, for `paperdigest status`.
SELECT page_id, run_id, digest_date, location, n_entries, fetched_at, captured_at,
       capture_basis, capture_estimated
FROM pages ORDER BY page_id DESC LIMIT $limit;
