-- Schema version 4: capture times. A page's figures were true when it was captured (the HTTP
-- Date header, the request time, `--as-of`, a time the page states, or its digest day's end),
-- which for an imported or replayed page is not when it was loaded. Ages, gains per hour,
-- "since …" and late arrivals are measured between capture times.
--
-- Rows loaded before this version keep their load time as their capture time, marked estimated.
ALTER TABLE pages ADD COLUMN captured_at TIMESTAMPTZ;
ALTER TABLE pages ADD COLUMN capture_basis VARCHAR;     -- see flows/capture.py CAPTURE_BASES
ALTER TABLE pages ADD COLUMN capture_estimated BOOLEAN;
UPDATE pages SET captured_at = fetched_at, capture_basis = 'load-time', capture_estimated = true;

ALTER TABLE sightings ADD COLUMN captured_at TIMESTAMPTZ;  -- its page's capture time
ALTER TABLE sightings ADD COLUMN capture_estimated BOOLEAN;
UPDATE sightings SET captured_at = seen_at, capture_estimated = true;

-- A paper's earliest capture: "late" means first captured after its day's email was built.
ALTER TABLE papers ADD COLUMN first_captured_at TIMESTAMPTZ;
UPDATE papers SET first_captured_at = first_seen_at;

-- The newest capture time of the data a digest was built from.
ALTER TABLE digests ADD COLUMN captured_at TIMESTAMPTZ;
UPDATE digests SET captured_at = delivered_at;
