-- mailferry store index, version 3: the migration workflow.

-- The target folder each source folder was last uploaded into, so that
-- status can show source and target side by side.
ALTER TABLE folders ADD COLUMN target_folder_id INTEGER REFERENCES target_folders(id);

-- One row per cutover run of a batch. Complete only when the final mirror,
-- upload and target check all passed for every account in it.
CREATE TABLE cutovers (
    id           INTEGER PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    complete     INTEGER NOT NULL DEFAULT 0,
    -- JSON: the accounts of the batch and their totals at the end.
    summary      TEXT
);
