-- The ranking corpus: every stored paper's title, abstract and keywords, in a stable order
-- (the ranking hashes it to know when its cached models are stale).
-- $until: only papers first seen on or before this digest date (NULL = all of them).
SELECT paper_id,
       arxiv_id,
       title,
       concat_ws(' ', title, abstract, array_to_string(coalesce(ai_keywords, []), ' ')) AS text
FROM papers
WHERE $until IS NULL OR first_digest_date IS NULL OR first_digest_date <= $until
ORDER BY paper_id
