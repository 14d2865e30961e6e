-- The moment a run's diff describes: the newest capture time among the pages the run loaded,
-- or, for a run that loaded none (everything already loaded), among the runs up to it.
SELECT coalesce(
    (SELECT max(captured_at) FROM pages WHERE run_id = $run_id),
    (SELECT max(captured_at) FROM pages WHERE run_id <= $run_id)
) AS captured_through;
