-- Schema version 1: the page archive, runs, papers, append-only sightings, quarantine.
CREATE SEQUENCE IF NOT EXISTS run_id_seq START 1;
CREATE SEQUENCE IF NOT EXISTS page_id_seq START 1;

CREATE TABLE runs (
    run_id      BIGINT PRIMARY KEY,
    flow        VARCHAR NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      VARCHAR NOT NULL,          -- running | ok | partial | failed | abandoned
    params      JSON,
    counts      JSON,
    error       VARCHAR
);

CREATE TABLE pages (
    page_id        BIGINT PRIMARY KEY,
    run_id         BIGINT NOT NULL,
    source         VARCHAR NOT NULL,       -- what was asked for: api | html | text
    fmt            VARCHAR NOT NULL,       -- what the parser recognised
    location       VARCHAR NOT NULL,       -- URL or file path
    digest_date    DATE,
    fetched_at     TIMESTAMPTZ NOT NULL,
    content_sha256 VARCHAR NOT NULL,
    http_status    INTEGER,
    content_type   VARCHAR,
    etag           VARCHAR,
    last_modified  VARCHAR,
    n_entries      INTEGER NOT NULL,
    n_rejected     INTEGER NOT NULL
);
CREATE INDEX pages_sha ON pages (content_sha256);

-- Raw bytes of every loaded page, zlib-compressed, so `paperdigest reparse` needs no network.
CREATE TABLE page_archive (
    page_id  BIGINT PRIMARY KEY,
    encoding VARCHAR NOT NULL,             -- zlib
    raw_size BIGINT NOT NULL,
    raw      BLOB NOT NULL
);

CREATE TABLE papers (
    paper_id          VARCHAR PRIMARY KEY, -- arXiv id, or 't:' + title key when none is known
    title_key         VARCHAR NOT NULL,
    arxiv_id          VARCHAR,
    title             VARCHAR NOT NULL,
    abstract          VARCHAR NOT NULL,
    authors           VARCHAR[] NOT NULL,
    n_authors         INTEGER,
    published_on      DATE,
    github_url        VARCHAR,
    project_url       VARCHAR,
    ai_summary        VARCHAR,
    ai_keywords       VARCHAR[] NOT NULL,
    organization      VARCHAR,
    first_seen_at     TIMESTAMPTZ NOT NULL,
    first_seen_run    BIGINT NOT NULL,
    first_digest_date DATE,
    last_seen_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX papers_title_key ON papers (title_key);

-- Append-only: one row per paper per page. Trending and late arrivals are computed from it.
CREATE TABLE sightings (
    run_id       BIGINT NOT NULL,
    page_id      BIGINT NOT NULL,
    paper_id     VARCHAR NOT NULL,
    digest_date  DATE,
    rank         INTEGER NOT NULL,
    upvotes      INTEGER,
    comments     INTEGER,
    github_stars INTEGER,
    seen_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE rejects (
    page_id  BIGINT,                       -- NULL when the whole input was refused
    location VARCHAR NOT NULL,
    position INTEGER NOT NULL,             -- 0 for the whole input
    reason   VARCHAR NOT NULL,
    excerpt  VARCHAR NOT NULL,
    run_id   BIGINT,
    seen_at  TIMESTAMPTZ NOT NULL
);
