-- A job may name a checkpoint file (relative to the checkpoint root) instead of a loaded model: any replica
-- that reads the shared checkpoint root can claim it and load those bytes (model_sha256 still pins them).
ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
