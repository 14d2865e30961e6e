-- What every page of the site is made from, as fingerprints: one row per day page (newest
-- first) with the papers it shows, each with a fingerprint of everything its own page, its
-- cards and its chart are read from. An incremental publish compares them with the last
-- publish's to find the pages to render, and reads the texts of only those
-- (`site_papers.sql`, `site_sightings.sql`, `site_digest_items.sql` with their lists).
-- Fingerprints are DuckDB's 64-bit hash() of whole rows, so a column added later counts too.
-- A set of rows combines with bit_xor of each row's hash hashed once more: hash() mixes the
-- columns of a row (and its arguments) in by XOR, so without that second mixing a change shared
-- by two rows of a set (a flag, a value) would cancel out.
WITH site_days AS (     -- every date with a day page: a loaded list, or a mailed daily digest
                        -- (a run on a day with no list of its own still mails), with when
                        -- its data last changed
    SELECT digest_date, max(changed_at) AS changed_at
    FROM (
        SELECT digest_date, fetched_at AS changed_at FROM pages
        WHERE digest_date IS NOT NULL AND n_entries > 0
        UNION ALL
        SELECT digest_date, delivered_at FROM digests
        WHERE digest_key = strftime(digest_date, '%Y-%m-%d')
    )
    GROUP BY digest_date
),
mailed AS (             -- recorded daily digests (weekly ones have no day page)
    SELECT * FROM digests WHERE digest_key = strftime(digest_date, '%Y-%m-%d')
),
items AS (              -- what a digest's page shows: the items site_digest_items.sql reads,
                        -- those with a sighting by the digest's own data and run
    SELECT m.digest_date, i.paper_id, true AS mailed, hash(m, i) AS item_hash
    FROM mailed m JOIN digest_items i USING (digest_key)
    WHERE i.paper_id IN (SELECT paper_id FROM papers)
      AND EXISTS (
        SELECT 1 FROM sightings s
        WHERE s.paper_id = i.paper_id AND s.run_id <= m.run_id
          AND s.captured_at <= coalesce(m.captured_at, m.delivered_at))
),
shown AS (              -- a day page shows its mailed digest's papers, else the day's list
    SELECT * FROM items
    UNION ALL
    SELECT DISTINCT s.digest_date, s.paper_id, false AS mailed, 0 AS item_hash
    FROM sightings s
    WHERE s.digest_date IN (SELECT digest_date FROM site_days)
      AND s.digest_date NOT IN (SELECT digest_date FROM items)
),
sighted AS (            -- each paper's sightings, and whether their date has a page
    SELECT s.paper_id,
           bit_xor(hash(hash(s, d.digest_date IS NOT NULL))) AS sightings_hash,
           -- as paper_latest: the date of the latest sighting, even when it has none
           arg_max_null(s.digest_date, (s.captured_at, s.page_id)) AS last_digest_date
    FROM sightings s LEFT JOIN site_days d USING (digest_date)
    WHERE s.paper_id IN (SELECT paper_id FROM shown)
    GROUP BY s.paper_id
),
mailings AS (           -- each paper's mailings (a digest's reasons read the earlier ones)
    SELECT i.paper_id, bit_xor(hash(hash(i, md))) AS mailings_hash
    FROM digest_items i JOIN digests md USING (digest_key)
    WHERE i.paper_id IN (SELECT paper_id FROM shown)
    GROUP BY i.paper_id
),
paper_rows AS (         -- hashed before any join, so no join holds whole paper rows
    SELECT paper_id, title, hash(p) AS row_hash FROM papers p
),
paper_fingerprints AS (
    SELECT p.paper_id, p.title, sd.last_digest_date,
           hash(p.row_hash, sd.sightings_hash, mi.mailings_hash) AS paper_hash
    FROM paper_rows p
    JOIN sighted sd USING (paper_id)
    LEFT JOIN mailings mi USING (paper_id)
),
day_papers AS (
    SELECT sh.digest_date, bool_or(sh.mailed) AS mailed,
           bit_xor(hash(hash(sh.item_hash, pf.paper_hash))) AS papers_hash,
           list((pf.paper_id, pf.paper_hash, pf.title, pf.last_digest_date)
                ORDER BY pf.paper_id) AS papers
    FROM shown sh JOIN paper_fingerprints pf USING (paper_id)
    GROUP BY sh.digest_date
)
SELECT d.digest_date,
       -- when its content last changed: a mailed digest's when it went out, a list's when
       -- it was last loaded
       CASE WHEN dp.mailed THEN m.delivered_at ELSE d.changed_at END AS changed_at,
       coalesce(dp.mailed, false) AS mailed,
       hash(d, m, dp.papers_hash) AS day_hash, coalesce(dp.papers, []) AS papers
FROM site_days d
LEFT JOIN mailed m USING (digest_date)
LEFT JOIN day_papers dp USING (digest_date)
ORDER BY d.digest_date DESC;
