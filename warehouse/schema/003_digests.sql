-- Schema version 3: what each digest mailed (so trending can ask "gained since last mailed?" and
-- late arrivals can ask "was that day's email already out?"), and GitHub links per sighting
-- (so "code released" is a change between two sightings).
CREATE TABLE digests (
    digest_key   VARCHAR PRIMARY KEY,      -- digest date (YYYY-MM-DD) or week (YYYY-Www)
    digest_date  DATE NOT NULL,
    run_id       BIGINT NOT NULL,
    delivered_at TIMESTAMPTZ NOT NULL,
    n_papers     INTEGER NOT NULL,
    n_recipients INTEGER NOT NULL
);

CREATE TABLE digest_items (
    digest_key VARCHAR NOT NULL,
    paper_id   VARCHAR NOT NULL,
    section    VARCHAR NOT NULL,           -- trending | new | late
    upvotes    INTEGER,
    mailed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (digest_key, paper_id)
);

ALTER TABLE sightings ADD COLUMN github_url VARCHAR;

-- A fetched day is complete only when every one of its pages loaded (an API day can span
-- several pages): backfill resumes from this, and gap repair looks for days missing here.
CREATE TABLE day_loads (
    digest_date  DATE NOT NULL,
    source       VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL,
    completed_at TIMESTAMPTZ NOT NULL,
    n_pages      INTEGER NOT NULL,
    n_entries    INTEGER NOT NULL
);
