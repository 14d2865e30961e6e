-- Schema version 2: the exactly-once email ledger, and title-only papers merged into arXiv ids.
CREATE TABLE sends (
    recipient   VARCHAR NOT NULL,
    digest_key  VARCHAR NOT NULL,          -- digest date (YYYY-MM-DD) or week (YYYY-Www)
    message_id  VARCHAR NOT NULL,
    state       VARCHAR NOT NULL,          -- pending | sent | failed
    attempts    INTEGER NOT NULL,
    error       VARCHAR,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    sent_at     TIMESTAMPTZ,
    PRIMARY KEY (recipient, digest_key)
);

-- A paper first known by title ('t:…') that later got an arXiv id keeps its old id here.
CREATE TABLE paper_aliases (
    alias    VARCHAR PRIMARY KEY,
    paper_id VARCHAR NOT NULL
);
