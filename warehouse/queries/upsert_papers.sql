-- Insert new papers; refresh the latest fields of known ones. A field the page does not carry
-- (NULL, empty list) never wipes what an earlier, richer page gave.
INSERT INTO papers
SELECT paper_id, title_key, arxiv_id, title, abstract, authors, n_authors, published_on,
       github_url, project_url, ai_summary, ai_keywords, organization,
       $seen_at, $run_id, digest_date, $seen_at
FROM batch
ON CONFLICT (paper_id) DO UPDATE SET
    title        = excluded.title,
    abstract     = excluded.abstract,
    arxiv_id     = COALESCE(excluded.arxiv_id, papers.arxiv_id),
    authors      = CASE WHEN len(excluded.authors) > 0 THEN excluded.authors ELSE papers.authors END,
    n_authors    = COALESCE(excluded.n_authors, papers.n_authors),
    published_on = COALESCE(excluded.published_on, papers.published_on),
    github_url   = COALESCE(excluded.github_url, papers.github_url),
    project_url  = COALESCE(excluded.project_url, papers.project_url),
    ai_summary   = COALESCE(excluded.ai_summary, papers.ai_summary),
    ai_keywords  = CASE WHEN len(excluded.ai_keywords) > 0
                        THEN excluded.ai_keywords ELSE papers.ai_keywords END,
    organization = COALESCE(excluded.organization, papers.organization),
    first_digest_date = LEAST(papers.first_digest_date, excluded.first_digest_date),
    last_seen_at = GREATEST(papers.last_seen_at, excluded.last_seen_at);
