-- mailferry store index, version 3: the migration workflow.

-- The target folder each source folder was last uploaded into, so that
-- status can show source and target side by side.
ALTER TABLE folders ADD COLUMN target_folder_id INTEGER REFERENCES target_folders(id);
-- Set when the folder map leaves the folder out of the upload on purpose.
ALTER TABLE folders ADD COLUMN left_out INTEGER NOT NULL DEFAULT 0;

-- The account whose upload placed each ledger entry. Two accounts that
-- upload into one mailbox (a mirror and an import of the same mail) share
-- its entries; only the one that placed a message sets its flags, so they
-- never undo each other's.
ALTER TABLE uploads ADD COLUMN account TEXT;

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
