-- Known papers: refresh their latest fields. A field the page does not carry (NULL, empty list)
-- never wipes what an earlier, richer page gave. Only rows the page changes are rewritten:
-- rewriting a row costs DuckDB a delete and an insert (its list columns cannot be updated in
-- place), and a re-fetched page usually changes nothing here, only its sightings' figures.
-- (Rows whose fields hash as the stored ones do never reach this statement.) It returns the
-- fields of the rows it changed, so that their new `fields_hash` can be recorded.
UPDATE papers SET
    title        = b.title,
    abstract     = b.abstract,
    arxiv_id     = COALESCE(b.arxiv_id, papers.arxiv_id),
    authors      = CASE WHEN len(b.authors) > 0 THEN b.authors ELSE papers.authors END,
    n_authors    = COALESCE(b.n_authors, papers.n_authors),
    published_on = COALESCE(b.published_on, papers.published_on),
    github_url   = COALESCE(b.github_url, papers.github_url),
    project_url  = COALESCE(b.project_url, papers.project_url),
    ai_summary   = COALESCE(b.ai_summary, papers.ai_summary),
    ai_keywords  = CASE WHEN len(b.ai_keywords) > 0 THEN b.ai_keywords ELSE papers.ai_keywords END,
    organization = COALESCE(b.organization, papers.organization)
FROM batch b
WHERE papers.paper_id = b.paper_id
  AND (papers.fields_hash IS NULL  -- not known yet: rewritten once, and then recorded
       OR papers.title IS DISTINCT FROM b.title
       OR papers.abstract IS DISTINCT FROM b.abstract
       OR papers.arxiv_id IS DISTINCT FROM COALESCE(b.arxiv_id, papers.arxiv_id)
       OR papers.authors IS DISTINCT FROM
          CASE WHEN len(b.authors) > 0 THEN b.authors ELSE papers.authors END
       OR papers.n_authors IS DISTINCT FROM COALESCE(b.n_authors, papers.n_authors)
       OR papers.published_on IS DISTINCT FROM COALESCE(b.published_on, papers.published_on)
       OR papers.github_url IS DISTINCT FROM COALESCE(b.github_url, papers.github_url)
       OR papers.project_url IS DISTINCT FROM COALESCE(b.project_url, papers.project_url)
       OR papers.ai_summary IS DISTINCT FROM COALESCE(b.ai_summary, papers.ai_summary)
       OR papers.ai_keywords IS DISTINCT FROM
          CASE WHEN len(b.ai_keywords) > 0 THEN b.ai_keywords ELSE papers.ai_keywords END
       OR papers.organization IS DISTINCT FROM COALESCE(b.organization, papers.organization))
RETURNING papers.paper_id, papers.title, papers.abstract, papers.arxiv_id, papers.n_authors,
    papers.published_on, papers.github_url, papers.project_url, papers.ai_summary,
    papers.organization, papers.authors, papers.ai_keywords;
