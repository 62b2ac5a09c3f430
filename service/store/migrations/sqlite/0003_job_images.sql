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
INSERT INTO job_images (
    job_id, ordinal, file, instances, predictions, tp, fp, fn, errors,
    true_denomination, predicted_denomination, data
)
SELECT
    jobs.id,
    CAST(item.key AS INTEGER),
    COALESCE(json_extract(item.value, '$.file'), ''),
    COALESCE(json_extract(item.value, '$.instances'), 0),
    COALESCE(json_extract(item.value, '$.predictions'), 0),
    COALESCE(json_extract(item.value, '$.tp'), 0),
    COALESCE(json_extract(item.value, '$.fp'), 0),
    COALESCE(json_extract(item.value, '$.fn'), 0),
    COALESCE(json_extract(item.value, '$.fp'), 0) + COALESCE(json_extract(item.value, '$.fn'), 0),
    json_extract(item.value, '$.true_denomination'),
    json_extract(item.value, '$.predicted_denomination'),
    item.value
FROM jobs, json_each(jobs.per_image) AS item
WHERE jobs.per_image IS NOT NULL;
ALTER TABLE jobs DROP COLUMN per_image;
