-- The diff of one run against history: every paper that belongs in the digest, with its section
-- and the figures its reason is written from. Only sightings inside the window are read, so the
-- cost follows the window, not the years of history behind it. Every time here is a capture
-- time (when a page's figures were true), never a load time: a replayed or imported page is
-- measured at the moment it was saved, and `capture_estimated` says when that is a guess.
--
-- Parameters: $run_id (the run diffed), $since_run (papers first seen after it are new),
-- $window_start / $as_of (capture times), $min_gain (upvotes), $trending_limit, $stars_jump.
WITH win AS (
    SELECT * FROM sightings
    WHERE captured_at >= $window_start AND captured_at <= $as_of AND run_id <= $run_id
),
latest AS (
    SELECT * FROM win
    QUALIFY row_number() OVER (PARTITION BY paper_id ORDER BY captured_at DESC, page_id DESC) = 1
),
previous AS (   -- the newest capture from an earlier run, no later than the latest one
                -- (two estimated captures of one day's list can share a time)
    SELECT w.* FROM win w JOIN latest l USING (paper_id)
    WHERE w.run_id < l.run_id AND w.captured_at <= l.captured_at
    QUALIFY row_number() OVER (
        PARTITION BY w.paper_id ORDER BY w.captured_at DESC, w.page_id DESC) = 1
),
-- Mailings count by the run that sent them, not by clock (a replay mails at today's wall
-- clock what was captured months ago), and only earlier runs' count: diffing a run again after
-- its email went out gives the digest it mailed.
mailed AS (     -- the last time each paper went out, and its upvotes then
    SELECT i.paper_id, arg_max(i.upvotes, i.mailed_at) AS mailed_upvotes,
           max(i.mailed_at) AS mailed_at
    FROM digest_items i JOIN digests d USING (digest_key)
    WHERE i.paper_id IN (SELECT paper_id FROM latest) AND d.run_id < $run_id
    GROUP BY i.paper_id
),
day_mailed AS ( -- the capture time of the data each digest date's first email was built from
    SELECT digest_date, min(captured_at) AS captured_at
    FROM digests
    WHERE digest_date >= CAST($window_start AS DATE) - INTERVAL 31 DAY AND run_id < $run_id
    GROUP BY digest_date
),
facts AS (
    SELECT
        l.paper_id, l.digest_date, l.rank, l.upvotes, l.comments, l.github_stars, l.github_url,
        l.captured_at, l.capture_estimated,
        pr.upvotes AS prev_upvotes, pr.rank AS prev_rank, pr.captured_at AS prev_captured_at,
        pr.capture_estimated AS prev_capture_estimated,
        pr.digest_date AS prev_digest_date, pr.github_url AS prev_github_url,
        pr.github_stars AS prev_github_stars,
        m.mailed_upvotes, m.mailed_at,
        p.first_seen_run, p.first_captured_at, p.first_digest_date,
        dm.captured_at AS day_mailed_captured_at,
        p.title, p.abstract, p.arxiv_id, p.authors, p.n_authors, p.published_on, p.project_url,
        p.ai_summary, p.ai_keywords, p.organization,
        l.upvotes - pr.upvotes AS gain,
        -- hours between the two captures; a single capture's age counts from its listing
        -- morning (00:00 UTC of its digest day). An estimated capture time of a single
        -- sighting ranks as at most a day old (the reason states no age for it).
        greatest(
            CASE
                WHEN pr.paper_id IS NOT NULL
                    THEN epoch(l.captured_at - pr.captured_at) / 3600.0
                WHEN l.capture_estimated
                    THEN least(epoch(l.captured_at - CAST(l.digest_date AS TIMESTAMPTZ)) / 3600.0,
                               24.0)
                ELSE epoch(l.captured_at - CAST(l.digest_date AS TIMESTAMPTZ)) / 3600.0
            END, 1.0) AS hours,
        p.first_seen_run > $since_run AND p.first_seen_run <= $run_id AS first_seen_now,
        m.mailed_at IS NULL AND dm.captured_at < p.first_captured_at AS is_late
    FROM latest l
    JOIN papers p USING (paper_id)
    LEFT JOIN previous pr USING (paper_id)
    LEFT JOIN mailed m USING (paper_id)
    LEFT JOIN day_mailed dm ON dm.digest_date = p.first_digest_date
),
scored AS (
    SELECT *,
        CASE
            WHEN prev_upvotes IS NOT NULL THEN
                CASE WHEN gain >= $min_gain
                      AND (mailed_upvotes IS NULL OR upvotes - mailed_upvotes >= $min_gain)
                     THEN gain / hours END
            WHEN upvotes >= $min_gain AND mailed_at IS NULL THEN upvotes / hours
        END AS velocity
    FROM facts
),
ranked AS (
    SELECT *,
        CASE WHEN velocity IS NOT NULL
             THEN row_number() OVER (ORDER BY velocity DESC NULLS LAST, upvotes DESC, paper_id)
        END AS trending_rank
    FROM scored
)
SELECT
    *,
    CASE
        WHEN trending_rank <= $trending_limit THEN 'trending'
        WHEN is_late AND first_seen_run <= $run_id THEN 'late'
        WHEN first_seen_now THEN 'new'
    END AS section,
    CASE
        WHEN github_url IS NOT NULL AND prev_captured_at IS NOT NULL AND prev_github_url IS NULL
            THEN 'code_released'
        WHEN github_stars - prev_github_stars >= $stars_jump THEN 'stars_jump'
    END AS change
FROM ranked
WHERE section IS NOT NULL OR change IS NOT NULL
ORDER BY
    CASE section WHEN 'trending' THEN 0 WHEN 'late' THEN 1 WHEN 'new' THEN 2 ELSE 3 END,
    trending_rank NULLS LAST,
    upvotes DESC NULLS LAST,
    rank,
    paper_id;
