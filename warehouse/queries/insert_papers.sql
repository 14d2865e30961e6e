-- The page's papers the warehouse does not know yet ($ids): first seen by this run.
INSERT INTO papers
SELECT paper_id, title_key, arxiv_id, title, abstract, authors, n_authors, published_on,
       github_url, project_url, ai_summary, ai_keywords, organization,
       $seen_at, $run_id, digest_date, $seen_at
FROM batch
WHERE paper_id IN (SELECT unnest($ids));
