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
} as const;

/** Idempotency keys starting with this prefix are the ledger's own (sweeper entries). */
export const systemKeyPrefix = 'ledger:';
