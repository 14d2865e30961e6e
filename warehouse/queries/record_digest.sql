-- Remember what a delivered digest contained (idempotent: a re-run changes nothing).
INSERT INTO digest_items
SELECT $digest_key, paper_id, section, upvotes, $delivered_at FROM mailed_batch
ON CONFLICT (digest_key, paper_id) DO NOTHING;
