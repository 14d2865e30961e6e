-- A batch of sends the server accepted (`send_batch`: recipient, message_id).
UPDATE sends
SET state = 'sent', message_id = b.message_id, error = NULL, updated_at = $now, sent_at = $now
FROM send_batch AS b
WHERE sends.recipient = b.recipient AND sends.digest_key = $digest_key;
