-- The ledger rows of one digest for a batch of recipients (`asked`: one column, recipient).
SELECT s.recipient, s.state, s.message_id
FROM sends AS s
JOIN asked USING (recipient)
WHERE s.digest_key = $digest_key;
