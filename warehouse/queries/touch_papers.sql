-- Known papers seen again (`batch`): keep their earliest digest date and capture time, and
-- their latest sighting time.
UPDATE papers SET
    first_digest_date = LEAST(papers.first_digest_date, b.first_digest_date),
    last_seen_at      = GREATEST(papers.last_seen_at, b.last_seen_at),
    first_captured_at = LEAST(papers.first_captured_at, b.first_captured_at)
FROM batch b
WHERE papers.paper_id = b.paper_id;
