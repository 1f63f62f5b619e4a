import { hash } from 'node:crypto';
import type { LotState } from './ledger-state.js';
import type { Allocation, EntryRecord, TransferRecord, WriteResult } from './types.js';

/**
 * Canonical JSON: object keys sorted, no white space, bigint as a decimal string, Date as an
 * ISO-8601 string, Buffer as lowercase hex. The same entry read back from PostgreSQL (where
 * int8 arrives as a string and jsonb reorders keys) serialises to the same bytes, which is what
 * lets the audit recompute the hash chain from the rows alone.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (value instanceof CanonicalText) return value.text;
  switch (typeof value) {
    case 'bigint':
      return `"${value.toString()}"`;
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Error(`canonicalJson: non-integer number ${value}`);
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      throw new Error(`canonicalJson: cannot encode ${typeof value}`);
  }
  if (value instanceof Date) return `"${value.toISOString()}"`;
  if (Buffer.isBuffer(value)) return `"${value.toString('hex')}"`;
  // Plain loops and string building: this runs for every entry on the write path.
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i += 1) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const v = record[key];
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
    first = false;
  }
  return `${out}}`;
}

export function sha256(data: string | Buffer): Buffer {
  // crypto.hash is the one-shot form: no Hash object per call on the write path.
  return hash('sha256', data, 'buffer');
}

export const genesisHash = Buffer.alloc(32);

/** The stored form of a WriteResult: replay answers from it, the hash covers it. */
export type ResultJson = Record<string, string | AllocationJson[]>;
export interface AllocationJson {
  lot_id: string;
  credits: string;
}

export function allocationToJson(allocation: readonly Allocation[]): AllocationJson[] {
  return allocation.map((a) => ({ lot_id: a.lotId.toString(), credits: a.credits.toString() }));
}

export function allocationFromJson(json: readonly AllocationJson[]): Allocation[] {
  return json.map((a) => ({ lotId: BigInt(a.lot_id), credits: BigInt(a.credits) }));
}

export function resultToJson(result: WriteResult): ResultJson {
  const json: ResultJson = { entry_id: result.entryId.toString() };
  if (result.lotId !== undefined) json.lot_id = result.lotId.toString();
  if (result.holdId !== undefined) json.hold_id = result.holdId;
  if (result.expiresAt !== undefined) json.expires_at = result.expiresAt.toISOString();
  if (result.allocation !== undefined) json.allocation = allocationToJson(result.allocation);
  if (result.capturedCredits !== undefined) json.captured_credits = result.capturedCredits.toString();
  if (result.releasedCredits !== undefined) json.released_credits = result.releasedCredits.toString();
  if (result.expiredCredits !== undefined) json.expired_credits = result.expiredCredits.toString();
  if (result.clawedBackCredits !== undefined) json.clawed_back_credits = result.clawedBackCredits.toString();
  if (result.shortfallCredits !== undefined) json.shortfall_credits = result.shortfallCredits.toString();
  if (result.refundedMicrosTotal !== undefined) json.refunded_micros_total = result.refundedMicrosTotal.toString();
  if (result.reinstatedCredits !== undefined) json.reinstated_credits = result.reinstatedCredits.toString();
  return json;
}

export function resultFromJson(json: ResultJson, replayed: boolean): WriteResult {
  const str = (key: string): string | undefined => {
    const v = json[key];
    return typeof v === 'string' ? v : undefined;
  };
  const result: WriteResult = { entryId: BigInt(str('entry_id') ?? '0'), replayed };
  const lotId = str('lot_id');
  if (lotId !== undefined) result.lotId = BigInt(lotId);
  const holdId = str('hold_id');
  if (holdId !== undefined) result.holdId = holdId;
  const expiresAt = str('expires_at');
  if (expiresAt !== undefined) result.expiresAt = new Date(expiresAt);
  const allocation = json.allocation;
  if (Array.isArray(allocation)) result.allocation = allocationFromJson(allocation);
  const captured = str('captured_credits');
  if (captured !== undefined) result.capturedCredits = BigInt(captured);
  const released = str('released_credits');
  if (released !== undefined) result.releasedCredits = BigInt(released);
  const expired = str('expired_credits');
  if (expired !== undefined) result.expiredCredits = BigInt(expired);
  const clawed = str('clawed_back_credits');
  if (clawed !== undefined) result.clawedBackCredits = BigInt(clawed);
  const shortfall = str('shortfall_credits');
  if (shortfall !== undefined) result.shortfallCredits = BigInt(shortfall);
  const refunded = str('refunded_micros_total');
  if (refunded !== undefined) result.refundedMicrosTotal = BigInt(refunded);
  const reinstated = str('reinstated_credits');
  if (reinstated !== undefined) result.reinstatedCredits = BigInt(reinstated);
  return result;
}

/**
 * The bytes an entry's hash covers: every column of the entry and of its transfers except the
 * hash itself. Values may be in memory form (bigint, Date, Buffer) or as read from PostgreSQL
 * (strings for int8, parsed jsonb): both encode identically.
 */
export interface HashableEntry {
  seq: bigint | string;
  kind: string;
  userId: string | null;
  holdId: string | null;
  idempotencyKey: string;
  requestHash: Buffer;
  actor: string;
  recordedAt: Date;
  effectiveAt: Date;
  policyVersion: string | null;
  allocation: unknown;
  metadata: unknown;
  result: unknown;
  reversesSeq: bigint | string | null;
  /**
   * The lots this entry creates or changes, as the entry leaves them (lotsToJson). Null or
   * absent for entries that touch no lot: their bytes are then exactly what they were before
   * lots were journaled, so older chains still recompute.
   */
  lots?: unknown;
  transfers: readonly HashableTransfer[];
}

/** A transfer as the hash reads it: TransferRecord, with int8 columns possibly still text. */
export type HashableTransfer = {
  [K in keyof TransferRecord]: TransferRecord[K] extends bigint
    ? bigint | string
    : TransferRecord[K] extends bigint | null
      ? bigint | string | null
      : TransferRecord[K];
};

export function entryHash(prevHash: Buffer, entry: HashableEntry): Buffer {
  // The canonical JSON of { seq, kind, user_id, …, transfers: [[idx, kind, …], …] } written out
  // in its sorted key order directly: the same bytes canonicalJson would produce for that
  // object (canonical.test.ts checks it), without sorting keys on the write path.
  const c = canonicalJson;
  let transfers = '';
  for (const t of entry.transfers) {
    transfers +=
      `${transfers === '' ? '' : ','}[${c(t.idx)},${c(t.kind)},${c(t.debitAccountId)},${c(t.creditAccountId)},` +
      `${c(t.amount)},${c(t.unit)},${c(t.pendingSeq)},${c(t.pendingIdx)},${c(t.debitVersion)},` +
      `${c(t.debitBalanceAfter)},${c(t.debitHeldAfter)},${c(t.creditVersion)},${c(t.creditBalanceAfter)},` +
      `${c(t.creditHeldAfter)}]`;
  }
  const body =
    `{"actor":${c(entry.actor)},"allocation":${c(entry.allocation)},"effective_at":${c(entry.effectiveAt)},` +
    `"hold_id":${c(entry.holdId)},"idempotency_key":${c(entry.idempotencyKey)},"kind":${c(entry.kind)},` +
    (entry.lots === null || entry.lots === undefined ? '' : `"lots":${c(entry.lots)},`) +
    `"metadata":${c(entry.metadata)},"policy_version":${c(entry.policyVersion)},` +
    `"recorded_at":${c(entry.recordedAt)},"request_hash":${c(entry.requestHash)},"result":${c(entry.result)},` +
    `"reverses_seq":${c(entry.reversesSeq)},"seq":${c(entry.seq)},"transfers":[${transfers}],` +
    `"user_id":${c(entry.userId)}}`;
  return hash('sha256', Buffer.concat([prevHash, Buffer.from(body)]), 'buffer');
}

/** The object whose canonical JSON an entry's hash covers (for tests and external auditors). */
export function entryHashBody(entry: HashableEntry): Record<string, unknown> {
  return {
    seq: entry.seq,
    kind: entry.kind,
    user_id: entry.userId,
    hold_id: entry.holdId,
    idempotency_key: entry.idempotencyKey,
    request_hash: entry.requestHash,
    actor: entry.actor,
    recorded_at: entry.recordedAt,
    effective_at: entry.effectiveAt,
    policy_version: entry.policyVersion,
    allocation: entry.allocation,
    metadata: entry.metadata,
    result: entry.result,
    reverses_seq: entry.reversesSeq,
    ...(entry.lots === null || entry.lots === undefined ? {} : { lots: entry.lots }),
    transfers: entry.transfers.map((t) => [
      t.idx,
      t.kind,
      t.debitAccountId,
      t.creditAccountId,
      t.amount,
      t.unit,
      t.pendingSeq,
      t.pendingIdx,
      t.debitVersion,
      t.debitBalanceAfter,
      t.debitHeldAfter,
      t.creditVersion,
      t.creditBalanceAfter,
      t.creditHeldAfter,
    ]),
  };
}

/** Hash of the request as sent (minus its key): the same key with another request is refused. */
export function requestHash(command: object): Buffer {
  const { idempotencyKey: _key, ...rest } = command as Record<string, unknown>;
  return sha256(canonicalJson(rest));
}

/** JSON text already in canonical form, embedded as it is (encoded once, hashed and stored). */
export class CanonicalText {
  constructor(readonly text: string) {}
}

/**
 * The canonical JSON text of an entry's jsonb columns. The same text is hashed and written, so
 * the write path encodes each once; PostgreSQL's jsonb reads back to the same canonical bytes.
 */
export function entryJsonColumns(
  entry: Pick<EntryRecord, 'allocation' | 'metadata' | 'result'> & { lots?: readonly LotState[] },
): EntryRecord['json'] {
  return {
    allocation: entry.allocation === null ? null : canonicalJson(allocationToJson(entry.allocation)),
    metadata: canonicalJson(entry.metadata),
    result: canonicalJson(resultToJson(entry.result)),
    lots: entry.lots === undefined || entry.lots.length === 0 ? null : canonicalJson(lotsToJson(entry.lots)),
  };
}

/** A lot row as the journal records it: every column of the `lots` table, in its stored form. */
export interface LotJson {
  account_id: string;
  user_id: string;
  bucket: string;
  granted_credits: string;
  effective_at: string;
  expires_at: string | null;
  priority: number;
  cost_basis_micros: string;
  currency: string | null;
  deferred_account_id: string | null;
  external_ref: string | null;
  entry_seq: string;
  plan: string | null;
  period_start: string | null;
  refunded_micros: string;
  breakage_micros: string;
  disputed_micros: string;
  clawback_owed_credits: string;
  expiry_swept: boolean;
  reversed: boolean;
  refunded_seq: string | null;
}

/**
 * The lots an entry creates or changes, as it leaves them (ledger README §4: every fact that
 * decides a balance is in the entry's hashed bytes). Terms (bucket, effective_at, expires_at,
 * priority, cost basis, currency, external_ref, …) come with the entry that creates the lot;
 * bookkeeping (refunded, breakage, swept) with every entry that changes it, so the audit
 * rebuilds the `lots` table from the journal alone.
 */
export function lotsToJson(lots: readonly LotState[]): LotJson[] {
  return lots.map((l) => ({
    account_id: l.accountId.toString(),
    user_id: l.userId,
    bucket: l.bucket,
    granted_credits: l.grantedCredits.toString(),
    effective_at: l.effectiveAt.toISOString(),
    expires_at: l.expiresAt === null ? null : l.expiresAt.toISOString(),
    priority: l.priority,
    cost_basis_micros: l.costBasisMicros.toString(),
    currency: l.currency,
    deferred_account_id: l.deferredAccountId === null ? null : l.deferredAccountId.toString(),
    external_ref: l.externalRef,
    entry_seq: l.entrySeq.toString(),
    plan: l.plan,
    period_start: l.periodStart === null ? null : l.periodStart.toISOString(),
    refunded_micros: l.refundedMicros.toString(),
    breakage_micros: l.breakageMicros.toString(),
    disputed_micros: l.disputedMicros.toString(),
    clawback_owed_credits: l.clawbackOwedCredits.toString(),
    expiry_swept: l.expirySwept,
    reversed: l.reversed,
    refunded_seq: l.refundedSeq === null ? null : l.refundedSeq.toString(),
  }));
}

export function hashEntryRecord(entry: EntryRecord): Buffer {
  const text = (json: string | null) => (json === null ? null : new CanonicalText(json));
  return entryHash(entry.prevHash, {
    ...entry,
    allocation: text(entry.json.allocation),
    metadata: text(entry.json.metadata),
    result: text(entry.json.result),
    lots: text(entry.json.lots),
  });
}
