-- mailferry store index, version 4: what the store knows is wrong.

-- A blob found damaged when it was read (missing, corrupt, or bytes that do
-- not hash to its name). The next mirror fetches its message again, writes
-- the blob anew and clears the mark; until then upload and export skip it
-- and say so.
ALTER TABLE blobs ADD COLUMN damaged_at INTEGER;
-- missing, unreadable, corrupt or wrong-content
ALTER TABLE blobs ADD COLUMN damage TEXT;
CREATE INDEX blobs_damaged ON blobs(hash) WHERE damaged_at IS NOT NULL;

-- INTERNALDATE may be unknown: a server that sends none, or one that cannot
-- be parsed, is kept as NULL (never as 1970). SQLite cannot relax a NOT NULL
-- column in place, so the table is rebuilt with the same rows.
CREATE TABLE messages_v4 (
    id                    INTEGER PRIMARY KEY,
    folder_id             INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity           INTEGER NOT NULL,
    uid                   INTEGER NOT NULL,
    blob_hash             TEXT NOT NULL REFERENCES blobs(hash),
    -- System and keyword flags, space separated, sorted; never \Recent.
    flags                 TEXT NOT NULL,
    modseq                INTEGER,
    -- INTERNALDATE as a Unix instant plus the offset the server gave;
    -- NULL when the server gave none that could be read.
    internal_date         INTEGER,
    internal_date_offset  INTEGER,
    size                  INTEGER NOT NULL,
    first_seen_at         INTEGER NOT NULL,
    -- Set when the message vanished at the source; the row and blob stay.
    expunged_at           INTEGER,
    UNIQUE (folder_id, uidvalidity, uid)
);
INSERT INTO messages_v4 (id, folder_id, uidvalidity, uid, blob_hash, flags, modseq,
                         internal_date, internal_date_offset, size, first_seen_at, expunged_at)
    SELECT id, folder_id, uidvalidity, uid, blob_hash, flags, modseq,
           internal_date, internal_date_offset, size, first_seen_at, expunged_at
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v4 RENAME TO messages;
CREATE INDEX messages_blob ON messages(blob_hash);
CREATE INDEX messages_live ON messages(folder_id, uidvalidity) WHERE expunged_at IS NULL;
-- Earlier versions stored an unknown INTERNALDATE as the Unix epoch.
UPDATE messages SET internal_date = NULL, internal_date_offset = NULL
    WHERE internal_date = 0 AND internal_date_offset = 0;
