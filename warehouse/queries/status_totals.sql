SELECT
    (SELECT count(*) FROM pages) AS pages,
    (SELECT count(*) FROM papers) AS papers,
    (SELECT count(*) FROM sightings) AS sightings,
    (SELECT count(*) FROM rejects) AS rejects,
    (SELECT count(*) FROM runs) AS runs,
    (SELECT min(digest_date) FROM pages) AS first_date,
    (SELECT max(digest_date) FROM pages) AS last_date,
    (SELECT count(*) FROM sends WHERE state = 'sent') AS emails_sent;
