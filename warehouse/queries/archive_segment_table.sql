-- One segment of the page archive (see schema/005); {segment} is its number, set by the
-- warehouse. `stored_size` is the length of `raw`: what a segment holds, without reading it.
CREATE TABLE page_archive_{segment} (
    page_id     BIGINT PRIMARY KEY,
    encoding    VARCHAR NOT NULL,   -- zlib
    raw_size    BIGINT NOT NULL,
    raw         BLOB NOT NULL,      -- the exact bytes received, compressed
    stored_size BIGINT NOT NULL
);
