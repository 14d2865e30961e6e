-- Views for people. Recreated at every open, so they always match the current schema.

-- The latest figures per paper: the paper row plus its most recently captured sighting.
CREATE OR REPLACE VIEW paper_latest AS
SELECT p.*, s.digest_date AS last_digest_date, s.rank AS last_rank, s.upvotes,
       s.comments, s.github_stars, s.seen_at AS last_sighting_at, s.captured_at AS last_captured_at
FROM papers p
JOIN (
    SELECT * FROM sightings
    QUALIFY row_number() OVER (PARTITION BY paper_id ORDER BY captured_at DESC, page_id DESC) = 1
) s USING (paper_id);

-- The list for each digest date, as last seen: one row per (date, paper), best rank first.
CREATE OR REPLACE VIEW digest_list AS
SELECT s.digest_date, s.rank, s.paper_id, p.title, s.upvotes, s.comments, s.github_stars,
       p.github_url, s.seen_at, s.captured_at
FROM (
    SELECT * FROM sightings
    QUALIFY row_number() OVER (
        PARTITION BY digest_date, paper_id ORDER BY captured_at DESC, page_id DESC) = 1
) s
JOIN papers p USING (paper_id);
