-- What each target mailbox holds of each item (contacts, events, tasks
-- uploaded through Microsoft Graph), the items' counterpart of `uploads`.
--
-- Exactly once across crashes: a row is `pending` (with the blob being
-- sent and the tag sent with it) before the request goes out, and `done`
-- (with the id Graph gave the item) after the reply. A pending row with no
-- Graph id is reconciled by looking the tag up at the target before the
-- item is created again; a pending row with a Graph id was an update, which
-- is sent again (an update is idempotent). A done row whose blob is not the
-- item's blob is an item that changed since: it is updated in place.

CREATE TABLE item_uploads (
    id           INTEGER PRIMARY KEY,
    item_id      INTEGER NOT NULL REFERENCES items(id),
    -- The target mailbox.
    target       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
    -- The item's text that was (or is being) sent.
    blob_hash    TEXT NOT NULL REFERENCES blobs(hash),
    -- The tag sent with a create (transactionId and extended property of
    -- events, extended property of contacts, linked resource of tasks).
    tag          TEXT NOT NULL,
    -- The contact folder, calendar or task list, and the item, at the target.
    container_id TEXT,
    graph_id     TEXT,
    reason_kind  TEXT,
    reason       TEXT,
    -- What the target could not hold of an item it took (a fourth e-mail
    -- address kept in the notes, a photo it does not take), one per line.
    losses       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL,
    UNIQUE (item_id, target)
);
