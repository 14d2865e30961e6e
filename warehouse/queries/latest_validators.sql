-- The validators of the newest successful fetch of a URL, for a conditional request.
SELECT etag, last_modified FROM pages
WHERE location = $location AND (etag IS NOT NULL OR last_modified IS NOT NULL)
ORDER BY page_id DESC LIMIT 1;
