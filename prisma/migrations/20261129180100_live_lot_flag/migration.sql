-- accounts_live_lots_idx again, on a flag instead of the totals (ledger README, Benchmark,
-- "Plans that do not depend on statistics"). Partial on `credits_posted > debits_posted`, the
-- index made every update of a lot account's totals a non-HOT update, since a column of its
-- predicate changed: each Consume added entries to accounts_pkey, accounts_code_key and this
-- index. `live_lot` is derived by PostgreSQL from the same totals (nothing new for the batch to
-- write or the audit to rebuild), and PostgreSQL compares an indexed column's old and new
-- values: the flag changes only when a lot's balance crosses zero, so every other update can be
-- HOT again. The table is rewritten once to compute the column.
ALTER TABLE accounts ADD COLUMN live_lot boolean
  GENERATED ALWAYS AS (kind = 'LOT' AND credits_posted > debits_posted) STORED;
DROP INDEX accounts_live_lots_idx;
CREATE INDEX accounts_live_lots_idx ON accounts (user_id) WHERE live_lot;
