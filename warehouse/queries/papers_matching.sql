-- The stored papers a batch of pages can meet, with the digest of each one's fields: by id
-- ($ids: the entries' ids and title keys, since a title-only paper's id is its title key), and by
-- title key ($keys: those of title-only entries, which resolve onto stored arXiv ids).
SELECT paper_id, title_key, fields_hash FROM papers WHERE paper_id IN (SELECT unnest($ids))
UNION
SELECT paper_id, title_key, fields_hash FROM papers WHERE title_key IN (SELECT unnest($keys));
