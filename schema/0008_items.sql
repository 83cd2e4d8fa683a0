-- Contacts, calendar events and tasks a mailbox's user exported (vCard,
-- iCalendar): each file imported is kept whole as a blob (the backup, as
-- it was), and each item read from it as a blob of its own text (what is
-- uploaded). An item is known by its UID within its account, kind and
-- collection (address book, calendar or task list): a changed item is
-- the same item with another blob, never a second one.

CREATE TABLE item_files (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    -- The file's name as given, for people.
    name         TEXT NOT NULL,
    blob_hash    TEXT NOT NULL REFERENCES blobs(hash),
    imported_at  INTEGER NOT NULL,
    UNIQUE (account_id, blob_hash)
);

CREATE TABLE items (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    kind         TEXT NOT NULL CHECK (kind IN ('contact', 'event', 'task')),
    collection   TEXT NOT NULL,
    uid          TEXT NOT NULL,
    blob_hash    TEXT NOT NULL REFERENCES blobs(hash),
    -- The name or summary people know it by.
    name         TEXT NOT NULL,
    -- The file it was last read from.
    file_id      INTEGER NOT NULL REFERENCES item_files(id),
    updated_at   INTEGER NOT NULL,
    UNIQUE (account_id, kind, collection, uid)
);

-- What could not be read in a file, one row per item or stretch of text,
-- as the last import of that file found it.
CREATE TABLE item_problems (
    id       INTEGER PRIMARY KEY,
    file_id  INTEGER NOT NULL REFERENCES item_files(id),
    line     INTEGER NOT NULL,
    item     TEXT,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX item_problems_file ON item_problems(file_id);
