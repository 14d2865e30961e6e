-- Papers new to the warehouse (`batch`: one row each, folded over the pages that showed them).
INSERT INTO papers (paper_id, title_key, arxiv_id, title, abstract, authors, n_authors,
                    published_on, github_url, project_url, ai_summary, ai_keywords, organization,
                    first_seen_at, first_seen_run, first_digest_date, last_seen_at,
                    first_captured_at)
SELECT paper_id, title_key, arxiv_id, title, abstract, authors, n_authors, published_on,
       github_url, project_url, ai_summary, ai_keywords, organization,
       first_seen_at, first_seen_run, first_digest_date, last_seen_at, first_captured_at
FROM batch;
