/**
 * One journal entry with its transfers, in the plain form the audit reads: every int8 as a
 * decimal string, every timestamp as ISO-8601 UTC with milliseconds, bytes as lowercase hex,
 * jsonb columns parsed. It is what the database source yields, and exactly one line of an
 * export's `entries.jsonl`, so the same checks run on a live database and on an export.
 */
export interface JournalRow {
  seq: string;
  kind: string;
  user_id: string | null;
  hold_id: string | null;
  idempotency_key: string;
  request_hash: string;
  actor: string;
  recorded_at: string;
  effective_at: string;
  policy_version: string | null;
  allocation: unknown;
  metadata: unknown;
  result: unknown;
  lots: unknown;
  reverses_seq: string | null;
  prev_hash: string;
  hash: string;
  transfers: TransferRow[];
}

export interface TransferRow {
  idx: number;
  kind: string;
  debit_account_id: string;
  credit_account_id: string;
  amount: string;
  unit: string;
  pending_seq: string | null;
  pending_idx: number | null;
  debit_version: string | null;
  debit_balance_after: string | null;
  debit_held_after: string | null;
  credit_version: string | null;
  credit_balance_after: string | null;
  credit_held_after: string | null;
}

/** Where a check failed: the first bad row, its table and column, and what was expected. */
export interface Finding {
  /** The entry the finding is about, or null for a table row no entry explains. */
  seq: string | null;
  table: string;
  column: string;
  /** The row's key in its table (`entry 12`, `transfer 12/0`, `account 7`, `lot 7`, `hold …`). */
  key: string;
  expected: string;
  found: string;
  /** One sentence an auditor can act on. */
  message: string;
}

export function formatFinding(f: Finding): string {
  const at = f.seq === null ? '' : `entry ${f.seq}: `;
  return `${at}${f.table}.${f.column} (${f.key}): expected ${f.expected}, found ${f.found} — ${f.message}`;
}
