-- mailferry store index, version 5: servers other than Dovecot.

-- The personal namespace prefix (RFC 2342) of the source mailbox and of each
-- target ("INBOX." on Cyrus and Courier, "" on Dovecot's default and on
-- Exchange), as last seen; NULL until known. Folder names are mapped
-- between the two, so personal folders land under the target's prefix.
ALTER TABLE accounts ADD COLUMN personal_prefix TEXT;
ALTER TABLE targets ADD COLUMN personal_prefix TEXT;

-- When the bytes sent differ from the stored blob: 'crlf' (bare line ends
-- made CRLF for a server that refuses them) or 'nul-literal' (NUL bytes
-- sent in a plain literal to a server without BINARY, on request); NULL:
-- the stored bytes. sent_hash is the sha256 of what was sent, so that a
-- crash between APPEND and its answer is still settled by content.
ALTER TABLE uploads ADD COLUMN sent_as TEXT;
ALTER TABLE uploads ADD COLUMN sent_hash TEXT;
