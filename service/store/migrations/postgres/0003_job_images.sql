-- Per-image rows in their own table: a page of /images is one indexed query, not a parse of the whole
-- JSON list. The filter and sort columns are copies of fields of `data` (the row as the library gave it).
CREATE TABLE job_images (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    file TEXT NOT NULL,
    instances INTEGER NOT NULL,
    predictions INTEGER NOT NULL,
    tp INTEGER NOT NULL,
    fp INTEGER NOT NULL,
    fn INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    true_denomination INTEGER,
    predicted_denomination INTEGER,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, ordinal)
);
CREATE INDEX job_images_fp ON job_images (job_id, fp DESC, ordinal);
CREATE INDEX job_images_fn ON job_images (job_id, fn DESC, ordinal);
CREATE INDEX job_images_errors ON job_images (job_id, errors DESC, ordinal);
CREATE INDEX job_images_true_denomination ON job_images (job_id, true_denomination, ordinal);
-- json (not jsonb) keeps each row's text, key order included, as it was stored
INSERT INTO job_images (
    job_id, ordinal, file, instances, predictions, tp, fp, fn, errors,
    true_denomination, predicted_denomination, data
)
SELECT
    jobs.id,
    (item.ordinality - 1)::integer,
    COALESCE(item.value ->> 'file', ''),
    COALESCE((item.value ->> 'instances')::integer, 0),
    COALESCE((item.value ->> 'predictions')::integer, 0),
    COALESCE((item.value ->> 'tp')::integer, 0),
    COALESCE((item.value ->> 'fp')::integer, 0),
    COALESCE((item.value ->> 'fn')::integer, 0),
    COALESCE((item.value ->> 'fp')::integer, 0) + COALESCE((item.value ->> 'fn')::integer, 0),
    (item.value ->> 'true_denomination')::integer,
    (item.value ->> 'predicted_denomination')::integer,
    item.value::text
FROM jobs
CROSS JOIN LATERAL json_array_elements(jobs.per_image::json) WITH ORDINALITY AS item (value, ordinality)
WHERE jobs.per_image IS NOT NULL;
ALTER TABLE jobs DROP COLUMN per_image;
