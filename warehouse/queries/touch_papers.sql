-- Known papers seen again: keep their earliest digest date and their latest sighting time.
-- (Run before the new papers are inserted, so the join only finds known ones.)
UPDATE papers SET
    first_digest_date = LEAST(papers.first_digest_date, b.digest_date),
    last_seen_at      = GREATEST(papers.last_seen_at, $seen_at)
FROM batch b
WHERE papers.paper_id = b.paper_id;
