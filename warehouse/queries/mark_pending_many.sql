-- A batch of sends about to be handed to the server (`send_batch`: recipient, message_id).
-- A new row starts at attempt 1; an existing one (failed, pending, or a deliberate resend)
-- goes back to pending with the given Message-ID and one more attempt.
INSERT INTO sends
SELECT recipient, $digest_key, message_id, 'pending', 1, NULL, $now, $now, NULL
FROM send_batch
ON CONFLICT (recipient, digest_key) DO UPDATE SET
    state = 'pending',
    message_id = excluded.message_id,
    attempts = sends.attempts + 1,
    updated_at = excluded.updated_at;
