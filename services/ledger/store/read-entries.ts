import type pg from 'pg';
import { allocationFromJson, type AllocationJson } from '../domain/canonical.js';
import { invalid, notFound } from '../domain/errors.js';
import { limits } from '../domain/limits.js';
import { boundedRead } from './bounded-read.js';
import type { Allocation, EntryKind, Metadata, TransferKind } from '../domain/types.js';

export interface TransferView {
  idx: number;
  kind: TransferKind;
  debitAccountId: bigint;
  debitAccountCode: string;
  creditAccountId: bigint;
  creditAccountCode: string;
  amount: bigint;
  unit: string;
  pendingSeq: bigint | null;
  pendingIdx: number | null;
}

export interface EntryView {
  seq: bigint;
  kind: EntryKind;
  userId: string | null;
  holdId: string | null;
  idempotencyKey: string;
  actor: string;
  recordedAt: Date;
  effectiveAt: Date;
  policyVersion: string | null;
  allocation: Allocation[];
  metadata: Metadata;
  requestHash: Buffer;
  prevHash: Buffer;
  hash: Buffer;
  reversesSeq: bigint | null;
  reversedBySeq: bigint | null;
  transfers: TransferView[];
}

export interface EntryFilter {
  userId: string | null;
  kind: EntryKind | null;
  recordedFrom: Date | null;
  recordedBefore: Date | null;
}

/** One entry as the page statement returns it: its transfers already gathered, as JSON. */
interface EntryRow {
  seq: string;
  kind: EntryKind;
  user_id: string | null;
  hold_id: string | null;
  idempotency_key: string;
  actor: string;
  recorded_at: Date;
  effective_at: Date;
  policy_version: string | null;
  allocation: AllocationJson[] | null;
  metadata: Metadata;
  request_hash: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
  reverses_seq: string | null;
  reversed_by: string | null;
  /** [idx, kind, debit id, debit code, credit id, credit code, amount, unit, pending seq, pending idx] */
  transfers: [number, TransferKind, string, string, string, string, string, string, string | null, number | null][];
}

/**
 * Entries with their transfers, the accounts' codes and the reversing entry, in one statement:
 * one round trip per page, and PostgreSQL does the gathering. Every lookup is a scalar subquery
 * on a unique index (transfers by entry_seq through its primary key, accounts by id, the
 * reversal by reverses_seq), so each entry costs a few index probes whatever the statistics.
 * `where` filters `e` and may use $2 on; $1 is the row limit.
 */
const pageStatement = (where: string) => `
  SELECT e.seq::text, e.kind, e.user_id, e.hold_id::text, e.idempotency_key, e.actor, e.recorded_at,
         e.effective_at, e.policy_version, e.allocation, e.metadata, e.request_hash, e.prev_hash, e.hash,
         e.reverses_seq::text,
         (SELECT r.seq::text FROM entries r WHERE r.reverses_seq = e.seq) AS reversed_by,
         (SELECT COALESCE(json_agg(json_build_array(
                   t.idx, t.kind, t.debit_account_id::text,
                   (SELECT a.code FROM accounts a WHERE a.id = t.debit_account_id),
                   t.credit_account_id::text,
                   (SELECT a.code FROM accounts a WHERE a.id = t.credit_account_id),
                   t.amount::text, t.unit, t.pending_seq::text, t.pending_idx) ORDER BY t.idx), '[]')
            FROM transfers t WHERE t.entry_seq = e.seq) AS transfers
    FROM entries e
   WHERE ${where}
   ORDER BY e.seq
   LIMIT $1`;

/**
 * Ordinary reads of the journal: raw SQL on the readers' pool, one statement per page; a page
 * cut by that pool's statement timeout is DEADLINE_EXCEEDED (bounded-read.ts).
 */
export class EntryReader {
  constructor(private readonly pool: pg.Pool) {}

  async get(seq: bigint): Promise<EntryView> {
    if (seq <= 0n) throw invalid('entry_id', 'must be positive');
    // Inputs: an entry's seq. Locks: none. Output: that entry, if any.
    const [view] = await this.#page('ledger.get-entry', 'e.seq = $2', [1, seq.toString()]);
    if (!view) throw notFound('entry_id', `no entry ${seq}`);
    return view;
  }

  /**
   * One page of entries in sequence order. The page token carries the last sequence number and
   * a fingerprint of the filter, so a token cannot be replayed against another filter.
   */
  async list(
    filter: EntryFilter,
    pageSize: number,
    pageToken: string,
  ): Promise<{ entries: EntryView[]; nextPageToken: string }> {
    if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > limits.listPageSizeMax) {
      throw invalid('page_size', `must be between 1 and ${limits.listPageSizeMax} (0 for ${limits.listPageSizeDefault})`);
    }
    const size = pageSize === 0 ? limits.listPageSizeDefault : pageSize;
    const fingerprint = filterFingerprint(filter);
    const afterSeq = pageToken === '' ? 0n : decodePageToken(pageToken, fingerprint);
    const values: unknown[] = [size + 1, afterSeq.toString()];
    const where = ['e.seq > $2'];
    const add = (condition: string, value: unknown) => {
      values.push(value);
      where.push(condition.replace('?', `$${values.length}`));
    };
    if (filter.userId !== null) add('e.user_id = ?', filter.userId);
    if (filter.kind !== null) add('e.kind = ?', filter.kind);
    if (filter.recordedFrom !== null) add('e.recorded_at >= ?', filter.recordedFrom.toISOString());
    if (filter.recordedBefore !== null) add('e.recorded_at < ?', filter.recordedBefore.toISOString());
    // Inputs: the filters present, the last seq of the previous page, the page size + 1 (to
    // know whether another page follows). Locks: none. Output: up to size + 1 entries. Named
    // per combination of filters (at most 16 statements per connection).
    const name = `ledger.list-entries-${[filter.userId, filter.kind, filter.recordedFrom, filter.recordedBefore].map((f) => (f === null ? 0 : 1)).join('')}`;
    const rows = await this.#page(name, where.join(' AND '), values);
    const entries = rows.slice(0, size);
    const last = entries[entries.length - 1];
    const nextPageToken = rows.length > size && last ? encodePageToken(last.seq, fingerprint) : '';
    return { entries, nextPageToken };
  }

  /** Up to `limit` entries from sequence `fromSeq` on, in order (for StreamJournal). */
  async from(fromSeq: bigint, limit: number): Promise<EntryView[]> {
    // Inputs: the first seq wanted and how many. Locks: none. Output: those entries, in order.
    return this.#page('ledger.entries-from', 'e.seq >= $2', [limit, fromSeq.toString()]);
  }

  async #page(name: string, where: string, values: unknown[]): Promise<EntryView[]> {
    const { rows } = await boundedRead(this.pool, () => this.pool.query<EntryRow>({ name, text: pageStatement(where), values }));
    return rows.map(entryView);
  }
}

function entryView(e: EntryRow): EntryView {
  return {
    seq: BigInt(e.seq),
    kind: e.kind,
    userId: e.user_id,
    holdId: e.hold_id,
    idempotencyKey: e.idempotency_key,
    actor: e.actor,
    recordedAt: e.recorded_at,
    effectiveAt: e.effective_at,
    policyVersion: e.policy_version,
    allocation: e.allocation === null ? [] : allocationFromJson(e.allocation),
    metadata: e.metadata,
    requestHash: e.request_hash,
    prevHash: e.prev_hash,
    hash: e.hash,
    reversesSeq: e.reverses_seq === null ? null : BigInt(e.reverses_seq),
    reversedBySeq: e.reversed_by === null ? null : BigInt(e.reversed_by),
    transfers: e.transfers.map(([idx, kind, debitId, debitCode, creditId, creditCode, amount, unit, pendingSeq, pendingIdx]) => ({
      idx,
      kind,
      debitAccountId: BigInt(debitId),
      debitAccountCode: debitCode ?? '',
      creditAccountId: BigInt(creditId),
      creditAccountCode: creditCode ?? '',
      amount: BigInt(amount),
      unit,
      pendingSeq: pendingSeq === null ? null : BigInt(pendingSeq),
      pendingIdx,
    })),
  };
}

function filterFingerprint(filter: EntryFilter): string {
  return [filter.userId ?? '', filter.kind ?? '', filter.recordedFrom?.toISOString() ?? '', filter.recordedBefore?.toISOString() ?? ''].join('|');
}

function encodePageToken(afterSeq: bigint, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ a: afterSeq.toString(), f: fingerprint })).toString('base64url');
}

function decodePageToken(token: string, fingerprint: string): bigint {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { a?: unknown; f?: unknown };
    if (typeof parsed.a !== 'string' || !/^\d+$/.test(parsed.a) || parsed.f !== fingerprint) throw new Error('mismatch');
    return BigInt(parsed.a);
  } catch {
    throw invalid('page_token', 'is not a token from a previous response with the same filters');
  }
}
