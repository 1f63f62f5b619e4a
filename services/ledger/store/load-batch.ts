import type pg from 'pg';
import { resultFromJson, type ResultJson } from '../domain/canonical.js';
import type { AccountState, HoldState, LotState, ReversibleEntry, StoredKey, Totals } from '../domain/ledger-state.js';
import type { Bucket, EntryKind, HoldStatus, Metadata, TransferKind } from '../domain/types.js';

/**
 * The reads of one write batch, all inside its transaction. The order of the locking reads is
 * the protocol every ledger process follows: user rows in sorted id order, then the journal
 * head. Nothing else is locked, so two processes can only wait on each other, never deadlock.
 */

/** What a batch's commands point at, and whose they are. */
export interface Targets {
  holdUsers: Map<string, string>;
  /** Lots named by id (expiries) or by external_ref (refunds), with their users. */
  lotUsers: Map<bigint, string>;
  refLots: Map<string, bigint>;
  /** Entries named by reversals, with their users (null for entries without one). */
  entryUsers: Map<bigint, string | null>;
}

export interface NamedTargets {
  holdIds: string[];
  lotIds: bigint[];
  externalRefs: string[];
  entrySeqs: bigint[];
}

/** True when a batch names no hold, lot or entry: most batches (Consume, Grant, Purchase). */
export function namesNothing(named: NamedTargets): boolean {
  return named.holdIds.length === 0 && named.lotIds.length === 0 && named.externalRefs.length === 0 && named.entrySeqs.length === 0;
}

export function noTargets(): Targets {
  return { holdUsers: new Map(), lotUsers: new Map(), refLots: new Map(), entryUsers: new Map() };
}

/**
 * Resolves the holds, lots and entries that commands name to the users who own them, so the
 * batch can lock those users. Ownership never changes, so this may run before any lock.
 */
export async function resolveTargets(client: pg.PoolClient, named: NamedTargets): Promise<Targets> {
  const targets = noTargets();
  if (named.holdIds.length > 0) {
    // Inputs: hold ids. Locks: none. Output: (id, user_id) of the holds that exist.
    const { rows } = await client.query<{ id: string; user_id: string }>(
      'SELECT id::text, user_id FROM holds WHERE id = ANY($1::uuid[])',
      [named.holdIds],
    );
    for (const r of rows) targets.holdUsers.set(r.id, r.user_id);
  }
  if (named.lotIds.length > 0 || named.externalRefs.length > 0) {
    // Inputs: lot ids and external refs. Locks: none. Output: the lots that exist, with users.
    const { rows } = await client.query<{ account_id: string; user_id: string; external_ref: string | null }>(
      `SELECT account_id::text, user_id, external_ref FROM lots
        WHERE account_id = ANY($1::bigint[]) OR external_ref = ANY($2::text[])`,
      [named.lotIds.map(String), named.externalRefs],
    );
    for (const r of rows) {
      targets.lotUsers.set(BigInt(r.account_id), r.user_id);
      if (r.external_ref !== null && named.externalRefs.includes(r.external_ref)) {
        targets.refLots.set(r.external_ref, BigInt(r.account_id));
      }
    }
  }
  if (named.entrySeqs.length > 0) {
    // Inputs: entry sequence numbers. Locks: none. Output: the entries that exist, with users.
    const { rows } = await client.query<{ seq: string; user_id: string | null }>(
      'SELECT seq::text, user_id FROM entries WHERE seq = ANY($1::bigint[])',
      [named.entrySeqs.map(String)],
    );
    for (const r of rows) targets.entryUsers.set(BigInt(r.seq), r.user_id);
  }
  return targets;
}

/** Locks the users that exist among `userIds` and returns them. */
export async function lockUsers(client: pg.PoolClient, userIds: string[]): Promise<string[]> {
  if (userIds.length === 0) return [];
  // Inputs: user ids. Locks: FOR UPDATE on each existing user row, taken in id order (the ORDER
  // BY makes PostgreSQL lock in that order), which serialises debits of one user across
  // processes. Output: the ids that exist.
  const { rows } = await client.query<{ id: string }>({
    name: 'ledger.lock-users',
    text: 'SELECT id FROM users WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE',
    values: [userIds],
  });
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
  const { rows } = await client.query<{ seq: string; hash: Buffer; recorded_at: Date }>({
    name: 'ledger.lock-head',
    text: 'SELECT seq::text, hash, recorded_at FROM journal_head WHERE id = 1 FOR UPDATE',
  });
  const row = rows[0];
  if (!row) throw new Error('journal_head is missing: was the database migrated?');
  return { seq: BigInt(row.seq), hash: row.hash, recordedAt: row.recorded_at };
}

/**
 * The platform accounts' totals, for the int64 bound. Sent after the head lock in the same
 * pipeline, so PostgreSQL runs it once the lock is granted: no other batch can change them then.
 */
export async function platformTotals(client: pg.PoolClient, ids: readonly bigint[]): Promise<Map<bigint, Totals>> {
  // Inputs: the platform account ids. Locks: none (the head lock serialises every writer).
  // Output: their four totals and version.
  const { rows } = await client.query<{ id: string; dp: string; cp: string; dpe: string; cpe: string; v: string }>({
    name: 'ledger.platform-totals',
    text: `SELECT id::text, debits_posted::text AS dp, credits_posted::text AS cp, debits_pending::text AS dpe,
                  credits_pending::text AS cpe, version::text AS v
             FROM accounts WHERE id = ANY($1::bigint[])`,
    values: [ids.map(String)],
  });
  return new Map(
    rows.map((r) => [
      BigInt(r.id),
      { debitsPosted: BigInt(r.dp), creditsPosted: BigInt(r.cp), debitsPending: BigInt(r.dpe), creditsPending: BigInt(r.cpe), version: BigInt(r.v) },
    ]),
  );
}

export async function storedKeys(client: pg.PoolClient, keys: string[]): Promise<Map<string, StoredKey>> {
  // Inputs: idempotency keys. Locks: none; under the head lock no other writer can add a key.
  // Output: request hash and stored result per key already in the journal.
  const { rows } = await client.query<{ idempotency_key: string; request_hash: Buffer; result: ResultJson }>({
    name: 'ledger.stored-keys',
    text: 'SELECT idempotency_key, request_hash, result FROM entries WHERE idempotency_key = ANY($1::text[])',
    values: [keys],
  });
  return new Map(
    rows.map((r) => [r.idempotency_key, { requestHash: r.request_hash, result: resultFromJson(r.result, true) }]),
  );
}

/** Subscription periods already granted, keyed `${userId}|${periodStart ISO}`. */
export async function subscriptionPeriods(
  client: pg.PoolClient,
  periods: { userId: string; periodStart: Date }[],
): Promise<Map<string, bigint>> {
  if (periods.length === 0) return new Map();
  // Inputs: (user, period_start) pairs of the batch's renewals. Locks: none (their users are
  // locked). Output: the pairs already granted, with the granting entry.
  const { rows } = await client.query<{ user_id: string; period_start: Date; entry_seq: string }>(
    `SELECT l.user_id, l.period_start, l.entry_seq::text
       FROM lots l
       JOIN unnest($1::text[], $2::timestamptz[]) AS p(user_id, period_start)
         ON l.user_id = p.user_id AND l.period_start = p.period_start
      WHERE l.bucket = 'SUBSCRIPTION'`,
    [periods.map((p) => p.userId), periods.map((p) => p.periodStart.toISOString())],
  );
  return new Map(rows.map((r) => [`${r.user_id}|${r.period_start.toISOString()}`, BigInt(r.entry_seq)]));
}

/** Entries that reversals name, with the transfers a mirror needs and any earlier reversal. */
export async function reversibleEntries(client: pg.PoolClient, seqs: bigint[]): Promise<Map<bigint, ReversibleEntry>> {
  if (seqs.length === 0) return new Map();
  const keys = seqs.map(String);
  // Inputs: entry seqs. Locks: none (append-only rows; reversals of them are serialised by
  // the head lock). Output: the entries, and the seq of the reversal of each, if any.
  const entries = await client.query<{
    seq: string;
    kind: EntryKind;
    user_id: string | null;
    hold_id: string | null;
    reverses_seq: string | null;
    reversed_by: string | null;
    metadata: Metadata;
  }>(
    `SELECT e.seq::text, e.kind, e.user_id, e.hold_id::text, e.reverses_seq::text, r.seq::text AS reversed_by, e.metadata
       FROM entries e LEFT JOIN entries r ON r.reverses_seq = e.seq
      WHERE e.seq = ANY($1::bigint[])`,
    [keys],
  );
  // Inputs: the same seqs. Locks: none. Output: their transfers in order.
  const transfers = await client.query<{
    entry_seq: string;
    kind: TransferKind;
    debit_account_id: string;
    credit_account_id: string;
    amount: string;
    unit: string;
  }>(
    `SELECT entry_seq::text, kind, debit_account_id::text, credit_account_id::text, amount::text, unit
       FROM transfers WHERE entry_seq = ANY($1::bigint[]) ORDER BY transfers.entry_seq, transfers.idx`,
    [keys],
  );
  const result = new Map<bigint, ReversibleEntry>();
  for (const e of entries.rows) {
    result.set(BigInt(e.seq), {
      seq: BigInt(e.seq),
      kind: e.kind,
      userId: e.user_id,
      holdId: e.hold_id,
      reversesSeq: e.reverses_seq === null ? null : BigInt(e.reverses_seq),
      reversedBy: e.reversed_by === null ? null : BigInt(e.reversed_by),
      metadata: e.metadata,
      transfers: transfers.rows
        .filter((t) => t.entry_seq === e.seq)
        .map((t) => ({
          kind: t.kind,
          debit: BigInt(t.debit_account_id),
          credit: BigInt(t.credit_account_id),
          amount: BigInt(t.amount),
          unit: t.unit,
        })),
    });
  }
  return result;
}

/** User-scoped accounts by id (those a reversal mirrors), whatever their balance. */
export async function userAccounts(client: pg.PoolClient, ids: bigint[]): Promise<AccountState[]> {
  if (ids.length === 0) return [];
  // Inputs: account ids. Locks: none (their users are locked). Output: non-platform accounts.
  const { rows } = await client.query<{
    id: string;
    code: string;
    unit: string;
    kind: 'LOT' | 'DEFERRED';
    user_id: string;
    flags: number;
    debits_posted: string;
    credits_posted: string;
    debits_pending: string;
    credits_pending: string;
    version: string;
  }>(
    `SELECT id::text, code, unit, kind, user_id, flags, debits_posted::text, credits_posted::text,
            debits_pending::text, credits_pending::text, version::text
       FROM accounts WHERE id = ANY($1::bigint[]) AND kind <> 'PLATFORM'`,
    [ids.map(String)],
  );
  return rows.map((r) =>
    accountState(r.id, r.code, r.unit, r.kind, r.user_id, r.flags, [
      r.debits_posted,
      r.credits_posted,
      r.debits_pending,
      r.credits_pending,
      r.version,
    ]),
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
  plan: string | null;
  period_start: Date | null;
  refunded_micros: string;
  breakage_micros: string;
  disputed_micros: string;
  clawback_owed_credits: string;
  expiry_swept: boolean;
  reversed: boolean;
  refunded_seq: string | null;
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

const lotColumns = `
  l.account_id::text, l.user_id, l.bucket, l.granted_credits::text, l.effective_at, l.expires_at,
  l.priority, l.cost_basis_micros::text, l.currency, l.deferred_account_id::text, l.external_ref,
  l.entry_seq::text, l.plan, l.period_start, l.refunded_micros::text, l.breakage_micros::text, l.disputed_micros::text, l.clawback_owed_credits::text, l.expiry_swept, l.reversed, l.refunded_seq::text,
  a.code, a.flags, a.debits_posted::text, a.credits_posted::text, a.debits_pending::text,
  a.credits_pending::text, a.version::text,
  d.code AS d_code, d.flags AS d_flags, d.debits_posted::text AS d_debits_posted,
  d.credits_posted::text AS d_credits_posted, d.version::text AS d_version`;

/**
 * The lot row and the deferred-revenue account of one lot account `a`, each a primary-key
 * probe. LATERAL with LIMIT 1 keeps PostgreSQL from flattening them into joins it could plan
 * as hash joins over whole tables (which it did with stale statistics): whatever the
 * statistics say, each lot costs two index probes.
 */
const lotAndDeferred = `
  JOIN LATERAL (SELECT * FROM lots WHERE lots.account_id = a.id LIMIT 1) l ON true
  LEFT JOIN LATERAL (SELECT * FROM accounts x WHERE x.id = l.deferred_account_id LIMIT 1) d ON true`;

/**
 * Lots with their credit and deferred-revenue accounts. `live` loads the lots of locked users
 * that still hold posted credits (held ones included); `ids` loads named lots, spent or not
 * (refunds and expiries name theirs).
 */
export async function loadLots(
  client: pg.PoolClient,
  by: { live: string[] } | { ids: bigint[] },
): Promise<{ lots: LotState[]; accounts: AccountState[] }> {
  const live = 'live' in by;
  const keys = live ? by.live : by.ids.map(String);
  if (keys.length === 0) return { lots: [], accounts: [] };
  // Inputs: locked user ids, or lot ids whose users are locked. Locks: none needed; the user
  // locks cover their lots and accounts. Output: one row per lot. Live lots are found through
  // accounts_live_lots_idx (its predicate, live_lot, is spelled out here, so it is the index that fits),
  // so a user's spent lots cost nothing; named lots through the accounts' primary key.
  const { rows } = await client.query<LotRow>({
    name: live ? 'ledger.load-lots-live' : 'ledger.load-lots-by-id',
    text: `SELECT ${lotColumns}
       FROM accounts a ${lotAndDeferred}
      WHERE ${live ? "a.user_id = ANY($1::text[]) AND a.live_lot" : "a.id = ANY($1::bigint[]) AND a.kind = 'LOT'"}`,
    values: [keys],
  });
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
      plan: r.plan,
      periodStart: r.period_start,
      refundedMicros: BigInt(r.refunded_micros),
      breakageMicros: BigInt(r.breakage_micros),
      disputedMicros: BigInt(r.disputed_micros),
      clawbackOwedCredits: BigInt(r.clawback_owed_credits),
      expirySwept: r.expiry_swept,
      reversed: r.reversed,
      refundedSeq: r.refunded_seq === null ? null : BigInt(r.refunded_seq),
    });
    accounts.push(
      accountState(r.account_id, r.code, 'CREDIT', 'LOT', r.user_id, r.flags, [
        r.debits_posted,
        r.credits_posted,
        r.debits_pending,
        r.credits_pending,
        r.version,
      ]),
    );
    if (r.deferred_account_id !== null && r.currency !== null) {
      // Deferred-revenue accounts never hold pending amounts.
      accounts.push(
        accountState(r.deferred_account_id, r.d_code!, r.currency, 'DEFERRED', r.user_id, r.d_flags!, [
          r.d_debits_posted!,
          r.d_credits_posted!,
          '0',
          '0',
          r.d_version!,
        ]),
      );
    }
  }
  return { lots, accounts };
}

/** Holds with their pending legs (the reservation's PENDING transfers). */
export async function holdsWithLegs(client: pg.PoolClient, holdIds: string[]): Promise<HoldState[]> {
  if (holdIds.length === 0) return [];
  // Inputs: hold ids. Locks: none needed; the holds' users are locked. Output: hold rows, with
  // the time their Reserve was recorded (a primary-key probe of entries per hold).
  const { rows } = await client.query<{
    id: string;
    user_id: string;
    reserve_seq: string;
    reserved_at: Date;
    credits: string;
    expires_at: Date;
    status: HoldStatus;
    closed_seq: string | null;
    captured_credits: string | null;
  }>(
    `SELECT h.id::text, h.user_id, h.reserve_seq::text, e.recorded_at AS reserved_at, h.credits::text,
            h.expires_at, h.status, h.closed_seq::text, h.captured_credits::text
       FROM holds h JOIN entries e ON e.seq = h.reserve_seq
      WHERE h.id = ANY($1::uuid[])`,
    [holdIds],
  );
  if (rows.length === 0) return [];
  // Inputs: the reservations' entry sequences. Locks: none. Output: their PENDING transfers,
  // which say how much each lot holds for the hold.
  const legs = await client.query<{ entry_seq: string; idx: number; debit_account_id: string; amount: string }>(
    `SELECT entry_seq::text, idx, debit_account_id::text, amount::text
       FROM transfers WHERE entry_seq = ANY($1::bigint[]) AND kind = 'PENDING'
      ORDER BY transfers.entry_seq, transfers.idx`,
    [rows.map((r) => r.reserve_seq)],
  );
  return rows.map((r) => ({
    id: r.id,
    userId: r.user_id,
    reserveSeq: BigInt(r.reserve_seq),
    reservedAt: r.reserved_at,
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

/** An account as read: ids and totals arrive as text (int8) and become bigint here. */
function accountState(
  id: string,
  code: string,
  unit: string,
  kind: 'LOT' | 'DEFERRED',
  userId: string,
  flags: number,
  [debitsPosted, creditsPosted, debitsPending, creditsPending, version]: [string, string, string, string, string],
): AccountState {
  return {
    id: BigInt(id),
    code,
    unit,
    kind,
    userId,
    flags,
    debitsPosted: BigInt(debitsPosted),
    creditsPosted: BigInt(creditsPosted),
    debitsPending: BigInt(debitsPending),
    creditsPending: BigInt(creditsPending),
    version: BigInt(version),
  };
}
