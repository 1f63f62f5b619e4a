import { createHash } from 'node:crypto';
import type { JournalRow } from './journal-row.js';

/**
 * The entry hash, recomputed by the audit with its own encoder (ledger README §4:
 * `hash = sha256(prev_hash ‖ canonical JSON of the entry and its transfers)`). It is written
 * apart from the write path's `domain/canonical.ts` on purpose: a bug there must not be able
 * to hide itself here. The two agree byte for byte on every entry the ledger writes, which the
 * audit tests check against journals the ledger built, and `audit-hash.test.ts` checks on
 * generated entries.
 *
 * Canonical JSON: object keys sorted (UTF-16 code unit order), no white space, strings as
 * JSON.stringify writes them, integers as digits; int8 values as decimal strings, timestamps as
 * ISO-8601 UTC with milliseconds, bytes as lowercase hex.
 */
export function canonical(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Error(`canonical: ${value} is not a safe integer`);
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      throw new Error(`canonical: cannot encode a ${typeof value}`);
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonical(value[i]);
    return out + ']';
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const v = record[key];
    if (v === undefined) continue;
    out += (first ? '' : ',') + JSON.stringify(key) + ':' + canonical(v);
    first = false;
  }
  return out + '}';
}

/** A string that is a JSON-safe decimal integer needs no escaping; anything else is escaped. */
const digits = /^-?[0-9]+$/;
function str(v: string | null): string {
  if (v === null) return 'null';
  return digits.test(v) ? `"${v}"` : JSON.stringify(v);
}

function int(v: number | null): string {
  return v === null ? 'null' : canonical(v);
}

/** The canonical bytes of an entry (every column but `hash`, transfers in index order). */
export function entryBody(row: JournalRow): string {
  let transfers = '';
  for (let i = 0; i < row.transfers.length; i++) {
    const t = row.transfers[i]!;
    transfers +=
      (i === 0 ? '[' : ',[') +
      int(t.idx) + ',' + str(t.kind) + ',' + str(t.debit_account_id) + ',' + str(t.credit_account_id) + ',' +
      str(t.amount) + ',' + str(t.unit) + ',' + str(t.pending_seq) + ',' + int(t.pending_idx) + ',' +
      str(t.debit_version) + ',' + str(t.debit_balance_after) + ',' + str(t.debit_held_after) + ',' +
      str(t.credit_version) + ',' + str(t.credit_balance_after) + ',' + str(t.credit_held_after) + ']';
  }
  // Keys in sorted order. `lots` exists only on entries that create or change a lot, so
  // entries written before lots were journaled keep their bytes.
  return (
    '{"actor":' + str(row.actor) +
    ',"allocation":' + canonical(row.allocation) +
    ',"effective_at":' + str(row.effective_at) +
    ',"hold_id":' + str(row.hold_id) +
    ',"idempotency_key":' + str(row.idempotency_key) +
    ',"kind":' + str(row.kind) +
    (row.lots === null || row.lots === undefined ? '' : ',"lots":' + canonical(row.lots)) +
    ',"metadata":' + canonical(row.metadata) +
    ',"policy_version":' + str(row.policy_version) +
    ',"recorded_at":' + str(row.recorded_at) +
    ',"request_hash":' + str(row.request_hash) +
    ',"result":' + canonical(row.result) +
    ',"reverses_seq":' + str(row.reverses_seq) +
    ',"seq":' + str(row.seq) +
    ',"transfers":[' + transfers + ']' +
    ',"user_id":' + str(row.user_id) +
    '}'
  );
}

/** sha256(prev_hash ‖ body), as lowercase hex. */
export function recomputeHash(prevHashHex: string, row: JournalRow): string {
  return createHash('sha256').update(Buffer.from(prevHashHex, 'hex')).update(entryBody(row), 'utf8').digest('hex');
}

export const genesisHashHex = '0'.repeat(64);
