-- Every paper of every recorded daily digest, with the figures it was mailed with and the ones
-- its reason is written from, for the site; with the paper's own columns (`site_papers.sql`)
-- these are the columns `flows.diff.digest_paper` and `reason_for` read.
-- A digest is read as it went out: only captures up to the data it was built from, from runs up
-- to its own. As in `diff.sql`, every time is a capture time, never a load time, and mailings
-- count by the run that sent them. Weekly digests (keys like 2025-W45) have no day page. Only the
-- digests of the dates in $days unless it is NULL.
WITH d AS (
    SELECT digest_key, digest_date, run_id, delivered_at,
           coalesce(captured_at, delivered_at) AS d_captured_at
    FROM digests
    WHERE digest_key = strftime(digest_date, '%Y-%m-%d')
      AND ($days IS NULL OR digest_date IN (SELECT unnest($days)))
),
items AS (
    SELECT d.digest_date AS d_date, d.run_id AS d_run, d.delivered_at, d.d_captured_at,
           i.paper_id, i.section
    FROM digest_items i JOIN d USING (digest_key)
),
seen AS (   -- each mailed paper's captures up to the data its email was built from
    SELECT it.d_date, it.paper_id, s.run_id, s.page_id, s.captured_at, s.capture_estimated,
           s.rank, s.upvotes, s.comments, s.github_stars, s.github_url, s.digest_date
    FROM items it
    JOIN sightings s ON s.paper_id = it.paper_id
     AND s.captured_at <= it.d_captured_at AND s.run_id <= it.d_run
),
latest AS (
    SELECT * FROM seen
    QUALIFY row_number() OVER (
        PARTITION BY d_date, paper_id ORDER BY captured_at DESC, page_id DESC) = 1
),
previous AS (   -- the newest capture from an earlier run, no later than the latest one
    SELECT s.* FROM seen s JOIN latest l USING (d_date, paper_id)
    WHERE s.run_id < l.run_id AND s.captured_at <= l.captured_at
    QUALIFY row_number() OVER (
        PARTITION BY s.d_date, s.paper_id ORDER BY s.captured_at DESC, s.page_id DESC) = 1
),
mailed_before AS (  -- the paper's mailing by an earlier run, and its upvotes then
    SELECT it.d_date, it.paper_id, arg_max(m.upvotes, m.mailed_at) AS mailed_upvotes
    FROM items it
    JOIN digest_items m ON m.paper_id = it.paper_id
    JOIN digests md ON md.digest_key = m.digest_key AND md.run_id < it.d_run
    GROUP BY ALL
)
SELECT
    it.d_date, it.delivered_at, it.section,
    l.paper_id, l.digest_date, l.rank, l.upvotes, l.comments, l.github_stars, l.github_url,
    l.captured_at, l.capture_estimated,
    pr.upvotes AS prev_upvotes, pr.rank AS prev_rank, pr.captured_at AS prev_captured_at,
    pr.capture_estimated AS prev_capture_estimated,
    pr.digest_date AS prev_digest_date, pr.github_url AS prev_github_url,
    pr.github_stars AS prev_github_stars,
    mb.mailed_upvotes, p.first_digest_date,
    l.upvotes - pr.upvotes AS gain,
    -- the same hours as diff.sql: between two captures, else from the listing morning (at most
    -- a day for an estimated capture, whose reason states no age)
    greatest(
        CASE
            WHEN pr.paper_id IS NOT NULL THEN epoch(l.captured_at - pr.captured_at) / 3600.0
            WHEN l.capture_estimated
                THEN least(epoch(l.captured_at - CAST(l.digest_date AS TIMESTAMPTZ)) / 3600.0,
                           24.0)
            ELSE epoch(l.captured_at - CAST(l.digest_date AS TIMESTAMPTZ)) / 3600.0
        END, 1.0) AS hours,
    CASE
        WHEN l.github_url IS NOT NULL AND pr.captured_at IS NOT NULL AND pr.github_url IS NULL
            THEN 'code_released'
        WHEN l.github_stars - pr.github_stars >= $stars_jump THEN 'stars_jump'
    END AS change
FROM items it
JOIN latest l USING (d_date, paper_id)
JOIN papers p ON p.paper_id = it.paper_id
LEFT JOIN previous pr USING (d_date, paper_id)
LEFT JOIN mailed_before mb USING (d_date, paper_id)
ORDER BY
    it.d_date,
    CASE it.section WHEN 'trending' THEN 0 WHEN 'late' THEN 1 WHEN 'new' THEN 2 ELSE 3 END,
    coalesce(l.upvotes - pr.upvotes, l.upvotes) DESC NULLS LAST,
    l.upvotes DESC NULLS LAST, l.rank, l.paper_id;
