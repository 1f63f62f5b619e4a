-- Lots in the journal (ledger README §4): every entry that creates or changes a lot records the
-- lot rows as it leaves them, in its hashed bytes, so the audit rebuilds the `lots` table from
-- the journal alone and a changed lot term (`UPDATE lots SET expires_at = NULL`) is detected.
-- Null for entries that touch no lot; their hash covers exactly what it covered before.
ALTER TABLE entries ADD COLUMN lots jsonb NULL;
