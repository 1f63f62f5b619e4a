/**
 * Every bound the ledger enforces, in one place. Units are last in the names.
 */
export const limits = {
  /** Credits in one command. Far above any real package, far below int64 overflow when summed. */
  creditsMax: 1_000_000_000_000n,
  /** Money in one command: one billion currency units, in micros. */
  amountMicrosMax: 1_000_000_000_000_000n,
  idempotencyKeyLengthMax: 128,
  userIdLengthMax: 128,
  externalRefLengthMax: 255,
  metadataKeysMax: 16,
  metadataKeyBytesMax: 64,
  metadataValueBytesMax: 256,
  /** Lot priority is a tie-breaker; keep it small and signed. */
  priorityAbsMax: 1_000_000,
  holdTtlMsMin: 1_000,
  listPageSizeMax: 500,
  listPageSizeDefault: 100,
  /**
   * The largest value any of an account's four totals may reach: PostgreSQL's bigint (int64).
   * Every command is checked against it before anything is written, platform accounts included
   * (their totals are read under the journal head's lock, which every batch holds), so an
   * account at the limit refuses further commands with ACCOUNT_LIMIT_REACHED instead of failing
   * in SQL.
   *
   * How long that lasts. The busiest accounts are platform ones that only grow:
   * `stripe.clearing.<CUR>` (debited by every purchase), `revenue.recognized.<CUR>` and
   * `upstream.wavespeed.cost.<CUR>`, in micros, and `platform.credits_issued` / `_consumed` in
   * credits. 9.22e18 micros is 9.22e12 currency units: at $10 million a day (1e13 micros) an
   * account fills in 9.22e5 days, about 2,500 years; at $1 billion a day, 25 years. Credits: at
   * a billion credits a day, 25 million years. The plan for a system that outgrows that is a
   * period close: a closing entry moves each platform account's balance to a fresh account for
   * the next period (`stripe.clearing.USD.2051`), after which the old account takes no more
   * transfers; balances and the chain stay exact, and the audit sums the period accounts.
   */
  accountTotalMax: 9_223_372_036_854_775_807n,
} as const;

/** Idempotency keys starting with this prefix are the ledger's own (sweeper entries). */
export const systemKeyPrefix = 'ledger:';
