-- Every paper with its latest figures, for the site's paper pages and undigested day lists;
-- only the papers of $ids unless it is NULL.
SELECT paper_id, title, abstract, arxiv_id, authors, n_authors, published_on, github_url,
       project_url, ai_summary, ai_keywords, organization, first_digest_date, first_seen_at,
       last_digest_date AS digest_date, last_rank AS rank, upvotes, comments, github_stars
FROM paper_latest
WHERE $ids IS NULL OR paper_id IN (SELECT unnest($ids))
ORDER BY paper_id;
