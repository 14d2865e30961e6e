-- Schema version 5: the page archive in segments. DuckDB rewrites a table's last row group whole
-- at every checkpoint that follows an append, and thousands of archived pages fit in one row
-- group: each checkpoint rewrote every archived byte (0.1 s → 0.7 s over a three-year backfill),
-- and once the archive outgrew a backfill's 64 MiB memory cap, such a checkpoint failed, fatally
-- for the connection. So pages now go to the newest of the tables page_archive_<n> (created by
-- flows/warehouse.py from queries/archive_segment_table.sql), and a new one starts once the
-- newest holds ~8 MiB: a checkpoint rewrites at most that. The view page_archive reads them all.
-- The archive so far becomes segment 0, which is never written again.
ALTER TABLE page_archive RENAME TO page_archive_0;
CREATE VIEW page_archive AS SELECT page_id, encoding, raw_size, raw FROM page_archive_0;
