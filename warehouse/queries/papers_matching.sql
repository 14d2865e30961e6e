-- The stored papers a batch of pages can meet: by id ($ids), or by title key ($keys) so that
-- title-only entries resolve onto arXiv ids. Two lookups, not one OR: each uses its own index.
SELECT paper_id, title_key FROM papers WHERE paper_id IN (SELECT unnest($ids))
UNION
SELECT paper_id, title_key FROM papers WHERE title_key IN (SELECT unnest($keys));
