-- Usage per app: each usage row records the endpoint (app id) of its job, so `/usage` can
-- break the totals down by app. Rows from before this migration were all made by the one app
-- the server then ran, image-to-video/720p.
ALTER TABLE usage ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'fal-ai/longcat-video/image-to-video/720p';
