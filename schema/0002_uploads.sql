-- mailferry store index, version 2: the upload ledger.

-- A target mailbox on a target server.
CREATE TABLE targets (
    id          INTEGER PRIMARY KEY,
    mailbox     TEXT NOT NULL,
    host        TEXT NOT NULL,
    -- The target's hierarchy separator, as last seen.
    delimiter   TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (mailbox, host)
);

-- A folder in a target mailbox, by its wire name there.
CREATE TABLE target_folders (
    id            INTEGER PRIMARY KEY,
    target_id     INTEGER NOT NULL REFERENCES targets(id),
    wire_name     TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    -- The folder's UIDVALIDITY when mailferry last opened it.
    uidvalidity   INTEGER,
    -- When the target refused wire_name, the name it took instead.
    actual_name   TEXT,
    UNIQUE (target_id, wire_name)
);

-- The ledger: what each target folder holds of each blob. Exactly once:
-- an entry is 'pending' (with the folder's UIDVALIDITY and UIDNEXT) before
-- its APPEND and 'done' (with the UID) after; a pending entry is reconciled
-- by reading the target back before anything is appended again.
CREATE TABLE uploads (
    id                INTEGER PRIMARY KEY,
    target_folder_id  INTEGER NOT NULL REFERENCES target_folders(id),
    blob_hash         TEXT NOT NULL REFERENCES blobs(hash),
    state             TEXT NOT NULL CHECK (state IN ('pending', 'done', 'present', 'skipped', 'failed')),
    uidvalidity       INTEGER,
    uidnext           INTEGER,
    uid               INTEGER,
    -- Flags as last set at the target (for pushing later changes).
    flags             TEXT,
    -- Why skipped or failed, in the server's words.
    reason            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    -- Other copies of the same bytes in the source folders mapped here.
    duplicates        INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL,
    UNIQUE (target_folder_id, blob_hash)
);
CREATE INDEX uploads_state ON uploads(state);
