-- The newest page-archive segment's number (tables page_archive_<n>, see schema/005).
SELECT max(CAST(regexp_extract(table_name, '^page_archive_(\d+)$', 1) AS INTEGER))
FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main'
  AND regexp_matches(table_name, '^page_archive_\d+$');
