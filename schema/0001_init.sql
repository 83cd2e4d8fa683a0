-- mailferry store index, version 1.
-- The raw bytes in objects/ are the truth; this index says where each
-- message was seen and what it looked like there.

CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    -- The account's name in the accounts file (its e-mail address).
    name        TEXT NOT NULL UNIQUE,
    host        TEXT NOT NULL,
    username    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE folders (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id),
    -- The name exactly as the server sends it (modified UTF-7): the key.
    wire_name       TEXT NOT NULL,
    -- The decoded name, for people.
    display_name    TEXT NOT NULL,
    delimiter       TEXT,
    -- LIST attributes such as \Sent or \Noselect, space separated.
    attributes      TEXT NOT NULL DEFAULT '',
    uidvalidity     INTEGER,
    uidnext         INTEGER,
    highestmodseq   INTEGER,
    -- Messages the server reported at the last check.
    source_count    INTEGER,
    -- Every UID at or below this one is stored or known to be gone.
    synced_uid      INTEGER NOT NULL DEFAULT 0,
    first_seen_at   INTEGER NOT NULL,
    last_checked_at INTEGER,
    -- Set when the folder vanished at the source; its messages stay.
    deleted_at      INTEGER,
    UNIQUE (account_id, wire_name)
);

CREATE TABLE blobs (
    -- sha256 of the raw bytes, lowercase hex; the file is objects/hh/rest.
    hash         TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    stored_size  INTEGER NOT NULL,
    -- Parsed with mail-parser when possible; a convenience, may be NULL.
    message_id   TEXT,
    date         TEXT,
    from_addr    TEXT,
    subject      TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX blobs_message_id ON blobs(message_id) WHERE message_id IS NOT NULL;

CREATE TABLE messages (
    id                    INTEGER PRIMARY KEY,
    folder_id             INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity           INTEGER NOT NULL,
    uid                   INTEGER NOT NULL,
    blob_hash             TEXT NOT NULL REFERENCES blobs(hash),
    -- System and keyword flags, space separated, sorted; never \Recent.
    flags                 TEXT NOT NULL,
    modseq                INTEGER,
    -- INTERNALDATE as a Unix instant plus the offset the server gave.
    internal_date         INTEGER NOT NULL,
    internal_date_offset  INTEGER NOT NULL,
    size                  INTEGER NOT NULL,
    first_seen_at         INTEGER NOT NULL,
    -- Set when the message vanished at the source; the row and blob stay.
    expunged_at           INTEGER,
    UNIQUE (folder_id, uidvalidity, uid)
);
CREATE INDEX messages_blob ON messages(blob_hash);
CREATE INDEX messages_live ON messages(folder_id, uidvalidity) WHERE expunged_at IS NULL;

-- One row per command run against the store, for status and reports.
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    command      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    -- JSON summary of the run.
    summary      TEXT
);
