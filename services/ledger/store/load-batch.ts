import type pg from 'pg';
import { resultFromJson, type ResultJson } from '../domain/canonical.js';
import type { AccountState, HoldState, LotState, StoredKey } from '../domain/ledger-state.js';
import type { Bucket, HoldStatus } from '../domain/types.js';

/**
 * The reads of one write batch, all inside its transaction. The order of the locking reads is
 * the protocol every ledger process follows: user rows in sorted id order, then the journal
 * head. Nothing else is locked, so two processes can only wait on each other, never deadlock.
 */

/** Hold ids → their users. A hold's user never changes, so this may run before any lock. */
export async function holdUsers(client: pg.PoolClient, holdIds: string[]): Promise<Map<string, string>> {
  if (holdIds.length === 0) return new Map();
  // Inputs: hold ids. Locks: none. Output: (id, user_id) of the holds that exist.
  const { rows } = await client.query<{ id: string; user_id: string }>(
    'SELECT id::text, user_id FROM holds WHERE id = ANY($1::uuid[])',
    [holdIds],
  );
  return new Map(rows.map((r) => [r.id, r.user_id]));
}

/** Locks the users that exist among `userIds` and returns them. */
export async function lockUsers(client: pg.PoolClient, userIds: string[]): Promise<string[]> {
  if (userIds.length === 0) return [];
  // Inputs: user ids. Locks: FOR UPDATE on each existing user row, taken in id order (the ORDER
  // BY makes PostgreSQL lock in that order), which serialises debits of one user across
  // processes. Output: the ids that exist.
  const { rows } = await client.query<{ id: string }>(
    'SELECT id FROM users WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE',
    [userIds],
  );
  return rows.map((r) => r.id);
}

export interface JournalHead {
  seq: bigint;
  hash: Buffer;
  recordedAt: Date;
}

export async function lockHead(client: pg.PoolClient): Promise<JournalHead> {
  // Inputs: none. Locks: FOR UPDATE on the single head row, held until COMMIT: this is what
  // makes sequence numbers gapless and the hash chain linear across processes.
  // Output: the last sequence number, hash and recorded_at.
  const { rows } = await client.query<{ seq: string; hash: Buffer; recorded_at: Date }>(
    'SELECT seq::text, hash, recorded_at FROM journal_head WHERE id = 1 FOR UPDATE',
  );
  const row = rows[0];
  if (!row) throw new Error('journal_head is missing: was the database migrated?');
  return { seq: BigInt(row.seq), hash: row.hash, recordedAt: row.recorded_at };
}

export async function storedKeys(client: pg.PoolClient, keys: string[]): Promise<Map<string, StoredKey>> {
  // Inputs: idempotency keys. Locks: none; under the head lock no other writer can add a key.
  // Output: request hash and stored result per key already in the journal.
  const { rows } = await client.query<{ idempotency_key: string; request_hash: Buffer; result: ResultJson }>(
    'SELECT idempotency_key, request_hash, result FROM entries WHERE idempotency_key = ANY($1::text[])',
    [keys],
  );
  return new Map(
    rows.map((r) => [r.idempotency_key, { requestHash: r.request_hash, result: resultFromJson(r.result, true) }]),
  );
}

export async function purchasedRefs(client: pg.PoolClient, refs: string[]): Promise<Map<string, bigint>> {
  if (refs.length === 0) return new Map();
  // Inputs: external refs of the batch's purchases. Locks: none (head lock). Output: ref → entry.
  const { rows } = await client.query<{ external_ref: string; entry_seq: string }>(
    'SELECT external_ref, entry_seq::text FROM lots WHERE external_ref = ANY($1::text[])',
    [refs],
  );
  return new Map(rows.map((r) => [r.external_ref, BigInt(r.entry_seq)]));
}

interface LotRow {
  account_id: string;
  user_id: string;
  bucket: Bucket;
  granted_credits: string;
  effective_at: Date;
  expires_at: Date | null;
  priority: number;
  cost_basis_micros: string;
  currency: string | null;
  deferred_account_id: string | null;
  external_ref: string | null;
  entry_seq: string;
  code: string;
  flags: number;
  debits_posted: string;
  credits_posted: string;
  debits_pending: string;
  credits_pending: string;
  version: string;
  d_code: string | null;
  d_flags: number | null;
  d_debits_posted: string | null;
  d_credits_posted: string | null;
  d_version: string | null;
}

/**
 * The live lots of locked users (those with posted credits left, held ones included) with
 * their credit accounts and deferred-revenue accounts.
 */
export async function liveLots(
  client: pg.PoolClient,
  userIds: string[],
): Promise<{ lots: LotState[]; accounts: AccountState[] }> {
  if (userIds.length === 0) return { lots: [], accounts: [] };
  // Inputs: locked user ids. Locks: none needed; the user locks cover their lots and accounts.
  // Output: one row per lot with posted credits left.
  const { rows } = await client.query<LotRow>(
    `SELECT l.account_id::text, l.user_id, l.bucket, l.granted_credits::text, l.effective_at,
            l.expires_at, l.priority, l.cost_basis_micros::text, l.currency,
            l.deferred_account_id::text, l.external_ref, l.entry_seq::text,
            a.code, a.flags, a.debits_posted::text, a.credits_posted::text,
            a.debits_pending::text, a.credits_pending::text, a.version::text,
            d.code AS d_code, d.flags AS d_flags, d.debits_posted::text AS d_debits_posted,
            d.credits_posted::text AS d_credits_posted, d.version::text AS d_version
       FROM lots l
       JOIN accounts a ON a.id = l.account_id
       LEFT JOIN accounts d ON d.id = l.deferred_account_id
      WHERE l.user_id = ANY($1::text[]) AND a.credits_posted > a.debits_posted`,
    [userIds],
  );
  const lots: LotState[] = [];
  const accounts: AccountState[] = [];
  for (const r of rows) {
    const lotId = BigInt(r.account_id);
    lots.push({
      accountId: lotId,
      userId: r.user_id,
      bucket: r.bucket,
      grantedCredits: BigInt(r.granted_credits),
      effectiveAt: r.effective_at,
      expiresAt: r.expires_at,
      priority: r.priority,
      costBasisMicros: BigInt(r.cost_basis_micros),
      currency: r.currency,
      deferredAccountId: r.deferred_account_id === null ? null : BigInt(r.deferred_account_id),
      externalRef: r.external_ref,
      entrySeq: BigInt(r.entry_seq),
    });
    accounts.push({
      id: lotId,
      code: r.code,
      unit: 'CREDIT',
      kind: 'LOT',
      userId: r.user_id,
      flags: r.flags,
      debitsPosted: BigInt(r.debits_posted),
      creditsPosted: BigInt(r.credits_posted),
      debitsPending: BigInt(r.debits_pending),
      creditsPending: BigInt(r.credits_pending),
      version: BigInt(r.version),
    });
    if (r.deferred_account_id !== null && r.currency !== null) {
      accounts.push({
        id: BigInt(r.deferred_account_id),
        code: r.d_code!,
        unit: r.currency,
        kind: 'DEFERRED',
        userId: r.user_id,
        flags: r.d_flags!,
        debitsPosted: BigInt(r.d_debits_posted!),
        creditsPosted: BigInt(r.d_credits_posted!),
        debitsPending: 0n,
        creditsPending: 0n,
        version: BigInt(r.d_version!),
      });
    }
  }
  return { lots, accounts };
}

/** Holds with their pending legs (the reservation's PENDING transfers). */
export async function holdsWithLegs(client: pg.PoolClient, holdIds: string[]): Promise<HoldState[]> {
  if (holdIds.length === 0) return [];
  // Inputs: hold ids. Locks: none needed; the holds' users are locked. Output: hold rows.
  const { rows } = await client.query<{
    id: string;
    user_id: string;
    reserve_seq: string;
    credits: string;
    expires_at: Date;
    status: HoldStatus;
    closed_seq: string | null;
    captured_credits: string | null;
  }>(
    `SELECT id::text, user_id, reserve_seq::text, credits::text, expires_at, status,
            closed_seq::text, captured_credits::text
       FROM holds WHERE id = ANY($1::uuid[])`,
    [holdIds],
  );
  if (rows.length === 0) return [];
  // Inputs: the reservations' entry sequences. Locks: none. Output: their PENDING transfers,
  // which say how much each lot holds for the hold.
  const legs = await client.query<{ entry_seq: string; idx: number; debit_account_id: string; amount: string }>(
    `SELECT entry_seq::text, idx, debit_account_id::text, amount::text
       FROM transfers WHERE entry_seq = ANY($1::bigint[]) AND kind = 'PENDING'
      ORDER BY entry_seq, idx`,
    [rows.map((r) => r.reserve_seq)],
  );
  return rows.map((r) => ({
    id: r.id,
    userId: r.user_id,
    reserveSeq: BigInt(r.reserve_seq),
    credits: BigInt(r.credits),
    expiresAt: r.expires_at,
    status: r.status,
    closedSeq: r.closed_seq === null ? null : BigInt(r.closed_seq),
    capturedCredits: r.captured_credits === null ? null : BigInt(r.captured_credits),
    legs: legs.rows
      .filter((l) => l.entry_seq === r.reserve_seq)
      .map((l) => ({ seq: BigInt(l.entry_seq), idx: l.idx, lotId: BigInt(l.debit_account_id), amount: BigInt(l.amount) })),
  }));
}

export async function nextAccountIds(client: pg.PoolClient, count: number): Promise<bigint[]> {
  if (count === 0) return [];
  // Inputs: how many ids. Locks: none (sequences are not transactional: an aborted batch leaves
  // a gap in account ids, which is harmless). Output: `count` fresh ids.
  const { rows } = await client.query<{ id: string }>(
    `SELECT nextval(pg_get_serial_sequence('accounts', 'id'))::text AS id FROM generate_series(1, $1)`,
    [count],
  );
  return rows.map((r) => BigInt(r.id));
}
