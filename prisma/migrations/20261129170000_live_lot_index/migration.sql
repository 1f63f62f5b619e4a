-- The lot accounts that still hold posted credits, by user: what GetBalance, Quote and every
-- debit batch read (ledger README, Benchmark, "Plans that do not depend on statistics"). A
-- user's spent lots stay in `lots` forever, so reading through lots_user_id_idx and filtering
-- costs every lot the user ever had; this index holds only the live ones, so the cost follows
-- the live lots alone. It is partial on the account's own totals, which the batch already
-- maintains: nothing new to write or to rebuild in the audit. The price is that an update of a
-- lot account's totals is no longer a HOT update (the predicate's columns change), measured in
-- the same README section.
CREATE INDEX accounts_live_lots_idx ON accounts (user_id)
  WHERE kind = 'LOT' AND credits_posted > debits_posted;
