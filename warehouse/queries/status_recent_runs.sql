SELECT run_id, flow, started_at, finished_at, status, counts, error
FROM runs ORDER BY run_id DESC LIMIT $limit;
