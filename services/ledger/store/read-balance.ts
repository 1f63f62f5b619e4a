import type pg from 'pg';
import { compareDrawdown } from '../domain/drawdown.js';
import { notFound } from '../domain/errors.js';
import { buckets, type Bucket } from '../domain/types.js';

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

/**
 * A user's balance, summed from the lots that still hold credits. Bucket rows always come in
 * the order SUBSCRIPTION, BONUS, PURCHASED; lots come in drawdown order.
 */
export async function readBalance(pool: pg.Pool, userId: string, now: Date): Promise<Balance> {
  // Inputs: user id. Locks: none (a read at READ COMMITTED sees the last committed batch).
  // Output: one row with lot = null when the user exists without live lots; no row when the
  // user is unknown.
  const { rows } = await pool.query<{
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
  }>(
    `SELECT l.account_id::text AS lot_id, l.bucket, l.granted_credits::text, l.effective_at,
            l.expires_at, l.priority, l.cost_basis_micros::text, l.currency, l.external_ref,
            l.entry_seq::text, (a.credits_posted - a.debits_posted)::text AS balance,
            a.debits_pending::text AS held, (d.credits_posted - d.debits_posted)::text AS deferred
       FROM users u
       LEFT JOIN lots l ON l.user_id = u.id
       LEFT JOIN accounts a ON a.id = l.account_id
       LEFT JOIN accounts d ON d.id = l.deferred_account_id
      WHERE u.id = $1 AND (l.account_id IS NULL OR a.credits_posted > a.debits_posted)`,
    [userId],
  );
  if (rows.length === 0) {
    // Either the user is unknown, or it exists and every lot is spent: tell them apart.
    const known = await pool.query('SELECT 1 FROM users WHERE id = $1', [userId]);
    if (known.rowCount === 0) throw notFound('user_id', `unknown user "${userId}"`);
  }
  const nowMs = now.getTime();
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
