import { ledgerNow } from '../domain/ledger-time.js';
import type pg from 'pg';
import { allocate, compareDrawdown, drawdownPolicyVersion } from '../domain/drawdown.js';
import { notFound } from '../domain/errors.js';
import { buckets, type Allocation, type Bucket } from '../domain/types.js';

export interface LotBalance {
  lotId: bigint;
  bucket: Bucket;
  grantedCredits: bigint;
  balance: bigint;
  held: bigint;
  available: bigint;
  effectiveAt: Date;
  expiresAt: Date | null;
  priority: number;
  costBasisMicros: bigint;
  deferredMicros: bigint;
  currency: string;
  externalRef: string;
  entryId: bigint;
}

export interface BucketBalance {
  bucket: Bucket;
  balance: bigint;
  held: bigint;
  available: bigint;
}

export interface Balance {
  userId: string;
  balance: bigint;
  held: bigint;
  available: bigint;
  buckets: BucketBalance[];
  lots: LotBalance[];
}

interface BalanceRow {
  lot_id: string | null;
  bucket: Bucket;
  granted_credits: string;
  effective_at: Date;
  expires_at: Date | null;
  priority: number;
  cost_basis_micros: string;
  currency: string | null;
  external_ref: string | null;
  entry_seq: string;
  balance: string;
  held: string;
  deferred: string | null;
  /** The journal head's recorded_at (the present read only): ledger time never runs behind it. */
  head_recorded_at?: Date;
}

const lotColumns = (l: string) => `${l}.account_id::text AS lot_id, ${l}.bucket, ${l}.granted_credits::text,
  ${l}.effective_at, ${l}.expires_at, ${l}.priority, ${l}.cost_basis_micros::text, ${l}.currency, ${l}.external_ref,
  ${l}.entry_seq::text`;

/**
 * The latest balance-after of one account up to the cut. The last entry that touched the
 * account at or before the cut is found by a row comparison on (account, entry_seq) ordered by
 * both: only the transfers_debit/credit_account_idx index can serve that order, so the plan is
 * one backward index probe whatever the statistics say (ordering by entry_seq alone let the
 * planner walk transfers_pkey backwards over the whole journal). When the account has no
 * transfer up to the cut, that probe lands on another account's row, whose entry_seq may be any
 * (past the cut too, where this account may have a transfer): the cut is checked again, and an
 * entry at or before it with a transfer on this account cannot be that row's. Among that
 * entry's transfers on the account, the highest version is the last. A null account (a free lot
 * has no deferred account) probes nothing: the IS NOT NULL test depends only on the outer row,
 * so PostgreSQL checks it before running the subquery. The same probe runs on the debit side and
 * on the credit side of transfers; the later of the two is the account's state at the cut.
 */
const lastOnSide = (side: 'debit' | 'credit', account: string) => `
    (SELECT t.${side}_version AS v, t.${side}_balance_after AS b, t.${side}_held_after AS h
       FROM transfers t
      WHERE ${account} IS NOT NULL AND t.${side}_account_id = ${account} AND t.entry_seq <= cut.seq AND t.entry_seq = (
        SELECT p.entry_seq FROM transfers p
         WHERE (p.${side}_account_id, p.entry_seq) <= (${account}, cut.seq)
         ORDER BY p.${side}_account_id DESC, p.entry_seq DESC LIMIT 1)
      ORDER BY t.${side}_version DESC LIMIT 1)`;
const sideAsOf = (account: string) => `
  SELECT x.b, x.h FROM (${lastOnSide('debit', account)}
    UNION ALL${lastOnSide('credit', account)}
  ) x ORDER BY x.v DESC LIMIT 1`;

/**
 * A user's balance, summed from the lots that still hold credits. Bucket rows always come in
 * the order SUBSCRIPTION, BONUS, PURCHASED; lots come in drawdown order.
 *
 * With `asOf`, the balance at that time: the journal is cut at the last entry recorded at or
 * before it (recorded_at grows with the sequence), and each lot's balance is the
 * balance-after of its last transfer up to the cut — an indexed lookup per lot, not a scan.
 */
export async function readBalance(pool: pg.Pool, userId: string, now: Date, asOf: Date | null = null): Promise<Balance> {
  let rows: BalanceRow[];
  if (asOf === null) {
    // Inputs: user id. Locks: none (a read at READ COMMITTED sees the last committed batch).
    // Output: one row with lot = null when the user exists without live lots; no row when the
    // user is unknown. Each row carries the journal head's recorded_at (a one-row table). Only
    // live lots are read, through accounts_live_lots_idx (its predicate is spelled out), each
    // with two primary-key probes kept as such by LATERAL … LIMIT 1: the cost follows the live
    // lots, not every lot the user ever had, and no statistics can turn it into a hash join.
    rows = (
      await pool.query<BalanceRow>({
        // Named: planned once per connection; GetBalance is the hottest read.
        name: 'ledger.read-balance',
        text: `SELECT ${lotColumns('z')}, z.balance, z.held, z.deferred, h.recorded_at AS head_recorded_at
           FROM users u
           JOIN journal_head h ON h.id = 1
           LEFT JOIN LATERAL (
             SELECT l.*, (a.credits_posted - a.debits_posted)::text AS balance, a.debits_pending::text AS held,
                    (d.credits_posted - d.debits_posted)::text AS deferred
               FROM accounts a
               JOIN LATERAL (SELECT * FROM lots WHERE lots.account_id = a.id LIMIT 1) l ON true
               LEFT JOIN LATERAL (SELECT * FROM accounts x WHERE x.id = l.deferred_account_id LIMIT 1) d ON true
              WHERE a.user_id = u.id AND a.live_lot) z ON true
          WHERE u.id = $1`,
        values: [userId],
      })
    ).rows;
  } else {
    // Inputs: user id and a time. Locks: none. Output: the user's lots created up to the cut,
    // with their balances after the cut's last transfer on them (no row: unknown at as_of).
    rows = (
      await pool.query<BalanceRow>({
        // Named: the statement is long to plan, and its plan is one choice whatever the
        // statistics (lots by user through lots_user_id_idx, index probes for the rest).
        name: 'ledger.read-balance-as-of',
        text: `WITH cut AS (
           SELECT COALESCE((SELECT seq FROM entries WHERE recorded_at <= $2
                             ORDER BY recorded_at DESC, seq DESC LIMIT 1), 0) AS seq)
         SELECT ${lotColumns('l')}, COALESCE(s.b, 0)::text AS balance, COALESCE(s.h, 0)::text AS held,
                ds.b::text AS deferred
           FROM cut
           JOIN lots l ON l.user_id = $1 AND l.entry_seq <= cut.seq
           LEFT JOIN LATERAL (${sideAsOf('l.account_id')}) s ON true
           LEFT JOIN LATERAL (${sideAsOf('l.deferred_account_id')}) ds ON true`,
        values: [userId, asOf.toISOString()],
      })
    ).rows;
    if (rows.length === 0) throw notFound('user_id', `user "${userId}" had no credits recorded at ${asOf.toISOString()}`);
    rows = rows.filter((r) => BigInt(r.balance) > 0n);
    now = asOf;
  }
  if (rows.length === 0 && asOf === null) {
    // Either the user is unknown, or it exists and every lot is spent: tell them apart.
    const known = await pool.query('SELECT 1 FROM users WHERE id = $1', [userId]);
    if (known.rowCount === 0) throw notFound('user_id', `unknown user "${userId}"`);
  }
  // Ledger time: this process's clock, but never behind the last entry recorded by any process.
  // Another replica whose clock runs a little ahead (within LEDGER_CLOCK_SKEW_MS_MAX) may have
  // granted a lot effective at its own now; it is spendable here as it is there.
  const nowMs = ledgerNow(now, rows[0]?.head_recorded_at).getTime();
  const lots: LotBalance[] = [];
  for (const r of rows) {
    if (r.lot_id === null) continue;
    const balance = BigInt(r.balance);
    const held = BigInt(r.held);
    const live = r.effective_at.getTime() <= nowMs && (r.expires_at === null || r.expires_at.getTime() > nowMs);
    lots.push({
      lotId: BigInt(r.lot_id),
      bucket: r.bucket,
      grantedCredits: BigInt(r.granted_credits),
      balance,
      held,
      available: live ? balance - held : 0n,
      effectiveAt: r.effective_at,
      expiresAt: r.expires_at,
      priority: r.priority,
      costBasisMicros: BigInt(r.cost_basis_micros),
      deferredMicros: r.deferred === null ? 0n : BigInt(r.deferred),
      currency: r.currency ?? '',
      externalRef: r.external_ref ?? '',
      entryId: BigInt(r.entry_seq),
    });
  }
  lots.sort((a, b) => compareDrawdown({ ...a, entrySeq: a.entryId }, { ...b, entrySeq: b.entryId }));
  const bucketRows = buckets.map((bucket) => {
    const of = lots.filter((l) => l.bucket === bucket);
    return {
      bucket,
      balance: of.reduce((s, l) => s + l.balance, 0n),
      held: of.reduce((s, l) => s + l.held, 0n),
      available: of.reduce((s, l) => s + l.available, 0n),
    };
  });
  return {
    userId,
    balance: bucketRows.reduce((s, b) => s + b.balance, 0n),
    held: bucketRows.reduce((s, b) => s + b.held, 0n),
    available: bucketRows.reduce((s, b) => s + b.available, 0n),
    buckets: bucketRows,
    lots,
  };
}

export interface Quote {
  sufficient: boolean;
  available: bigint;
  allocation: Allocation[];
  policyVersion: string;
}

/** What a debit of `credits` would draw now, by the same policy the write path uses. Writes nothing. */
export async function readQuote(pool: pg.Pool, userId: string, credits: bigint, now: Date): Promise<Quote> {
  const balance = await readBalance(pool, userId, now);
  const allocation = allocate(
    balance.lots.map((l) => ({ ...l, entrySeq: l.entryId })),
    credits,
  );
  return { sufficient: allocation !== null, available: balance.available, allocation: allocation ?? [], policyVersion: drawdownPolicyVersion };
}
