-- Every paper of every recorded daily digest, with the figures it was mailed with and the ones
-- its reason is written from, for the site; with the paper's own columns (`site_papers.sql`)
-- these are the columns `flows.diff.digest_paper` reads.
-- A digest is read as it went out: only sightings up to its delivery, from runs up to its own.
-- Weekly digests (keys like 2025-W45) have no day page and are left out.
WITH d AS (
    SELECT digest_key, digest_date, run_id, delivered_at FROM digests
    WHERE digest_key = strftime(digest_date, '%Y-%m-%d')
),
items AS (
    SELECT d.digest_date AS d_date, d.run_id AS d_run, d.delivered_at, i.paper_id, i.section
    FROM digest_items i JOIN d USING (digest_key)
),
seen AS (   -- each mailed paper's sightings up to the mailing, newest first
    SELECT it.d_date, it.paper_id, s.run_id, s.page_id, s.seen_at, s.rank, s.upvotes,
           s.comments, s.github_stars, s.github_url, s.digest_date
    FROM items it
    JOIN sightings s ON s.paper_id = it.paper_id
     AND s.seen_at <= it.delivered_at AND s.run_id <= it.d_run
),
latest AS (
    SELECT * FROM seen
    QUALIFY row_number() OVER (PARTITION BY d_date, paper_id ORDER BY seen_at DESC, page_id DESC) = 1
),
previous AS (   -- the newest sighting from an earlier run than the latest one
    SELECT s.* FROM seen s JOIN latest l USING (d_date, paper_id)
    WHERE s.run_id < l.run_id
    QUALIFY row_number() OVER (PARTITION BY s.d_date, s.paper_id ORDER BY s.seen_at DESC, s.page_id DESC) = 1
),
mailed_before AS (  -- the paper's previous mailing, and its upvotes then
    SELECT it.d_date, it.paper_id, arg_max(m.upvotes, m.mailed_at) AS mailed_upvotes
    FROM items it JOIN digest_items m ON m.paper_id = it.paper_id AND m.mailed_at < it.delivered_at
    GROUP BY ALL
)
SELECT
    it.d_date, it.delivered_at, it.section,
    l.paper_id, l.digest_date, l.rank, l.upvotes, l.comments, l.github_stars, l.github_url,
    l.seen_at,
    pr.upvotes AS prev_upvotes, pr.rank AS prev_rank, pr.seen_at AS prev_seen_at,
    pr.digest_date AS prev_digest_date, pr.github_url AS prev_github_url,
    pr.github_stars AS prev_github_stars,
    mb.mailed_upvotes, p.first_digest_date,
    l.upvotes - pr.upvotes AS gain,
    greatest(epoch(l.seen_at - coalesce(pr.seen_at, CAST(l.digest_date AS TIMESTAMPTZ)))
             / 3600.0, 1.0) AS hours,
    CASE
        WHEN l.github_url IS NOT NULL AND pr.seen_at IS NOT NULL AND pr.github_url IS NULL
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
