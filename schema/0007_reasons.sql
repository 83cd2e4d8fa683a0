-- Why a message is not at the target, as a kind a program can read: the
-- `reason` column keeps the words (ours, or the server's). Ledgers written
-- before this get their kinds from those words, once.
ALTER TABLE uploads ADD COLUMN reason_kind TEXT;

UPDATE uploads SET reason_kind = CASE
    WHEN state = 'skipped' AND (reason LIKE '%over the target''s limit%'
        OR reason LIKE '%toobig%' OR reason LIKE '%too large%' OR reason LIKE '%size%')
        THEN 'too-large'
    WHEN state = 'skipped' AND reason LIKE '%NUL bytes%' THEN 'nul-bytes'
    WHEN state = 'skipped' AND reason LIKE '%bare newline%' THEN 'bare-line-ends'
    WHEN state = 'skipped' AND reason LIKE '%line%' THEN 'line-too-long'
    WHEN state = 'skipped' THEN 'rejected'
    WHEN state = 'failed' AND reason LIKE 'stored message % is damaged%' THEN 'damaged'
    WHEN state = 'failed' AND reason LIKE 'missing at the target%' THEN 'missing-at-target'
    WHEN state = 'failed' THEN 'refused'
END
WHERE state IN ('skipped', 'failed');
