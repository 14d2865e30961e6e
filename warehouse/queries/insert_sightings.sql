INSERT INTO sightings (run_id, page_id, paper_id, digest_date, rank, upvotes, comments,
                       github_stars, github_url, seen_at)
SELECT $run_id, $page_id, paper_id, digest_date, rank, upvotes, comments, github_stars, github_url,
       $seen_at
FROM batch;
