-- Schema version 6: each paper keeps a digest of its refreshed fields (title, abstract, arXiv id,
-- authors, counts, links, summary, keywords, organisation: flows/pagebatch.py `fields_hash`).
-- A page's row for a known paper whose fields hash alike cannot change them, so the load only
-- touches its sighting times and refresh_papers.sql never sees it: a re-fetched page usually
-- changes no paper's fields, and binding its ~900 rows to find that out cost ~30 ms a page.
-- NULL means not known (papers stored before this version, or rewritten by a title merge): such
-- a paper's next row goes through refresh_papers.sql, which then records the digest.
ALTER TABLE papers ADD COLUMN fields_hash VARCHAR;
