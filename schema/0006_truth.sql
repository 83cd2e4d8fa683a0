-- mailferry store index, version 6: what status must not leave out.

-- How the last mirror and the last upload of each account of a batch ended,
-- also when the account never got as far as the store (a wrong password on
-- the first run). Keyed by the account's name in the accounts file.
CREATE TABLE account_runs (
    account          TEXT NOT NULL,
    -- 'mirror' or 'upload'.
    stage            TEXT NOT NULL,
    last_attempt_at  INTEGER NOT NULL,
    -- The last attempt that ended without an error; NULL if none did.
    last_ok_at       INTEGER,
    -- NULL when the last attempt succeeded; else 'login', 'connect',
    -- 'interrupted' or 'other', with the error in the server's words.
    error_kind       TEXT,
    error            TEXT,
    PRIMARY KEY (account, stage)
);

-- A folder whose last mirror did not finish: why, in the server's words.
-- Cleared when a later run checks it completely.
ALTER TABLE folders ADD COLUMN last_error TEXT;
