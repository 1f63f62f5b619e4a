import type pg from 'pg';
import { entryHash, genesisHash, type HashableTransfer } from '../domain/canonical.js';
import { buckets } from '../domain/types.js';
import { readBalance } from '../store/read-balance.js';

/**
 * Checks the invariants of ledger README §4 against a database, reading only committed rows. Every
 * ledger test ends with it; the audit command runs it on any journal. Each check is written
 * independently of the write path (plain SQL aggregates, a fresh hash computation) so that a
 * bug there cannot hide itself here.
 */
export interface InvariantReport {
  entries: number;
  transfers: number;
  accounts: number;
  violations: string[];
}

export interface VerifyOptions {
  /** Entries hashed per query while walking the chain. */
  pageSize?: number;
  /** With `now`, invariant 7: no hold is open past its TTL plus this period. */
  holdSweepPeriodMs?: number;
  now?: Date;
  /** Called after each page of the chain walk, for progress bars. */
  onProgress?: (checkedSeq: bigint, headSeq: bigint) => void;
}

export async function verifyJournal(pool: pg.Pool, options: VerifyOptions = {}): Promise<InvariantReport> {
  const violations: string[] = [];
  const add = (rows: Record<string, unknown>[], label: string) => {
    for (const row of rows.slice(0, 20)) violations.push(`${label}: ${JSON.stringify(row)}`);
    if (rows.length > 20) violations.push(`${label}: … and ${rows.length - 20} more`);
  };

  // 1. Each entry sums to zero per unit: every transfer moves one amount between two accounts
  // of its own unit, so the check is that units agree and both accounts exist.
  add(
    (
      await pool.query(`
        SELECT t.entry_seq::text, t.idx, t.unit, d.unit AS debit_unit, c.unit AS credit_unit
          FROM transfers t
          LEFT JOIN accounts d ON d.id = t.debit_account_id
          LEFT JOIN accounts c ON c.id = t.credit_account_id
         WHERE d.id IS NULL OR c.id IS NULL OR d.unit <> t.unit OR c.unit <> t.unit`)
    ).rows,
    'invariant 1: transfer unit or account mismatch',
  );
  add(
    (
      await pool.query(`
        SELECT t.entry_seq::text FROM transfers t LEFT JOIN entries e ON e.seq = t.entry_seq
         WHERE e.seq IS NULL GROUP BY t.entry_seq`)
    ).rows,
    'invariant 1: transfers without an entry',
  );
  add(
    (
      await pool.query(`
        SELECT t.entry_seq::text, t.idx FROM transfers t
          LEFT JOIN transfers p ON p.entry_seq = t.pending_seq AND p.idx = t.pending_idx
         WHERE t.pending_seq IS NOT NULL
           AND (p.entry_seq IS NULL OR p.kind <> 'PENDING' OR p.debit_account_id <> t.debit_account_id
                OR p.credit_account_id <> t.credit_account_id)`)
    ).rows,
    'invariant 1: post/void of a transfer that is not a matching pending one',
  );
  add(
    (
      await pool.query(`
        SELECT p.entry_seq::text, p.idx, p.amount::text, SUM(t.amount)::text AS resolved
          FROM transfers p JOIN transfers t ON t.pending_seq = p.entry_seq AND t.pending_idx = p.idx
         GROUP BY p.entry_seq, p.idx, p.amount HAVING SUM(t.amount) <> p.amount`)
    ).rows,
    'invariant 1: pending transfer resolved for a different amount',
  );

  // 2. Each account's totals (and version) equal the sum of its transfers.
  add(
    (
      await pool.query(`
        WITH moves AS (
          SELECT debit_account_id AS id,
                 SUM(CASE WHEN kind IN ('POSTED', 'POST_PENDING') THEN amount ELSE 0 END) AS dp,
                 0::numeric AS cp,
                 SUM(CASE kind WHEN 'PENDING' THEN amount WHEN 'POSTED' THEN 0 ELSE -amount END) AS dpe,
                 0::numeric AS cpe,
                 COUNT(*) AS n
            FROM transfers GROUP BY debit_account_id
          UNION ALL
          SELECT credit_account_id, 0, SUM(CASE WHEN kind IN ('POSTED', 'POST_PENDING') THEN amount ELSE 0 END),
                 0, SUM(CASE kind WHEN 'PENDING' THEN amount WHEN 'POSTED' THEN 0 ELSE -amount END), COUNT(*)
            FROM transfers GROUP BY credit_account_id
        ), sums AS (
          SELECT id, SUM(dp) dp, SUM(cp) cp, SUM(dpe) dpe, SUM(cpe) cpe, SUM(n) n FROM moves GROUP BY id
        )
        SELECT a.id::text, a.code FROM accounts a LEFT JOIN sums s ON s.id = a.id
         WHERE a.debits_posted <> COALESCE(s.dp, 0) OR a.credits_posted <> COALESCE(s.cp, 0)
            OR a.debits_pending <> COALESCE(s.dpe, 0) OR a.credits_pending <> COALESCE(s.cpe, 0)
            OR a.version <> COALESCE(s.n, 0)`)
    ).rows,
    'invariant 2: account totals differ from the sum of its transfers',
  );
  // Versions on user-scoped sides run 1..n without gaps, and the last one's balances are current.
  add(
    (
      await pool.query(`
        WITH sides AS (
          SELECT debit_account_id AS id, debit_version AS v, debit_balance_after AS b, debit_held_after AS h
            FROM transfers WHERE debit_version IS NOT NULL
          UNION ALL
          SELECT credit_account_id, credit_version, credit_balance_after, credit_held_after
            FROM transfers WHERE credit_version IS NOT NULL
        ), agg AS (
          SELECT id, COUNT(*) n, COUNT(DISTINCT v) nd, MIN(v) lo, MAX(v) hi FROM sides GROUP BY id
        )
        SELECT a.id::text, a.code, agg.n, agg.hi::text
          FROM accounts a
          LEFT JOIN agg ON agg.id = a.id
          LEFT JOIN sides last ON last.id = a.id AND last.v = agg.hi
         WHERE a.kind <> 'PLATFORM' AND a.version > 0
           AND (agg.id IS NULL OR agg.n <> agg.nd OR agg.lo <> 1 OR agg.hi <> a.version
                OR last.b <> a.credits_posted - a.debits_posted OR last.h <> a.debits_pending)`)
    ).rows,
    'invariant 2: version gap or stale balance-after',
  );

  // 3. No user-scoped account is overdrawn, holds included.
  add(
    (
      await pool.query(`
        SELECT id::text, code FROM accounts
         WHERE kind <> 'PLATFORM' AND debits_posted + debits_pending > credits_posted`)
    ).rows,
    'invariant 3: overdrawn account',
  );
  // Held credits on each lot equal the open holds' pending legs on it.
  add(
    (
      await pool.query(`
        WITH legs AS (
          SELECT t.debit_account_id AS id, SUM(t.amount) AS held
            FROM holds h JOIN transfers t ON t.entry_seq = h.reserve_seq AND t.kind = 'PENDING'
           WHERE h.status = 'OPEN' GROUP BY t.debit_account_id
        )
        SELECT a.id::text, a.debits_pending::text, COALESCE(legs.held, 0)::text AS open_holds
          FROM accounts a LEFT JOIN legs ON legs.id = a.id
         WHERE a.kind = 'LOT' AND a.debits_pending <> COALESCE(legs.held, 0)`)
    ).rows,
    'invariant 3: held credits differ from open holds',
  );

  // 4. Lot balances add up to the bucket balances GetBalance reports.
  const perUser = await pool.query<{ user_id: string; bucket: string; balance: string; held: string }>(`
    SELECT l.user_id, l.bucket, SUM(a.credits_posted - a.debits_posted)::text AS balance,
           SUM(a.debits_pending)::text AS held
      FROM lots l JOIN accounts a ON a.id = l.account_id GROUP BY l.user_id, l.bucket`);
  const expected = new Map<string, Map<string, { balance: bigint; held: bigint }>>();
  for (const r of perUser.rows) {
    const m = expected.get(r.user_id) ?? new Map();
    m.set(r.bucket, { balance: BigInt(r.balance), held: BigInt(r.held) });
    expected.set(r.user_id, m);
  }
  for (const [userId, byBucket] of expected) {
    const reported = await readBalance(pool, userId, options.now ?? new Date());
    for (const bucket of buckets) {
      const want = byBucket.get(bucket) ?? { balance: 0n, held: 0n };
      const got = reported.buckets.find((b) => b.bucket === bucket);
      if (!got || got.balance !== want.balance || got.held !== want.held) {
        violations.push(
          `invariant 4: user ${userId} bucket ${bucket}: lots hold ${want.balance}/${want.held} held, GetBalance says ${got?.balance}/${got?.held}`,
        );
      }
    }
  }

  // 5. The hash chain recomputes from genesis and sequence numbers have no gaps.
  const head = (await pool.query<{ seq: string; hash: Buffer }>('SELECT seq::text, hash FROM journal_head WHERE id = 1'))
    .rows[0];
  const headSeq = BigInt(head?.seq ?? '0');
  let prev = genesisHash;
  let expectedSeq = 1n;
  const pageSize = options.pageSize ?? 1_000;
  for (;;) {
    const page = await pool.query(
      `SELECT seq::text, kind, user_id, hold_id::text, idempotency_key, request_hash, actor,
              recorded_at, effective_at, policy_version, allocation, metadata, result, lots, reverses_seq::text,
              prev_hash, hash
         FROM entries WHERE entries.seq >= $1 ORDER BY entries.seq LIMIT $2`,
      [expectedSeq.toString(), pageSize],
    );
    if (page.rows.length === 0) break;
    const seqs = page.rows.map((r) => r.seq as string);
    const transfers = await pool.query(
      `SELECT entry_seq::text, idx, kind, debit_account_id::text, credit_account_id::text, amount::text,
              unit, pending_seq::text, pending_idx, debit_version::text, debit_balance_after::text,
              debit_held_after::text, credit_version::text, credit_balance_after::text, credit_held_after::text
         FROM transfers WHERE transfers.entry_seq = ANY($1::bigint[]) ORDER BY transfers.entry_seq, transfers.idx`,
      [seqs],
    );
    const bySeq = new Map<string, HashableTransfer[]>();
    for (const t of transfers.rows) {
      const list = bySeq.get(t.entry_seq) ?? [];
      list.push({
        idx: t.idx,
        kind: t.kind,
        debitAccountId: t.debit_account_id,
        creditAccountId: t.credit_account_id,
        amount: t.amount,
        unit: t.unit,
        pendingSeq: t.pending_seq,
        pendingIdx: t.pending_idx,
        debitVersion: t.debit_version,
        debitBalanceAfter: t.debit_balance_after,
        debitHeldAfter: t.debit_held_after,
        creditVersion: t.credit_version,
        creditBalanceAfter: t.credit_balance_after,
        creditHeldAfter: t.credit_held_after,
      });
      bySeq.set(t.entry_seq, list);
    }
    for (const r of page.rows) {
      const seq = BigInt(r.seq);
      if (seq !== expectedSeq) {
        violations.push(`invariant 5: sequence gap: expected ${expectedSeq}, found ${seq}`);
        expectedSeq = seq;
      }
      if (!(r.prev_hash as Buffer).equals(prev)) violations.push(`invariant 5: entry ${seq} prev_hash breaks the chain`);
      const computed = entryHash(r.prev_hash, {
        seq: r.seq,
        kind: r.kind,
        userId: r.user_id,
        holdId: r.hold_id,
        idempotencyKey: r.idempotency_key,
        requestHash: r.request_hash,
        actor: r.actor,
        recordedAt: r.recorded_at,
        effectiveAt: r.effective_at,
        policyVersion: r.policy_version,
        allocation: r.allocation,
        metadata: r.metadata,
        result: r.result,
        lots: r.lots,
        reversesSeq: r.reverses_seq,
        transfers: bySeq.get(r.seq) ?? [],
      });
      if (!computed.equals(r.hash)) violations.push(`invariant 5: entry ${seq} hash does not recompute`);
      prev = r.hash;
      expectedSeq = seq + 1n;
    }
    options.onProgress?.(expectedSeq - 1n, headSeq);
  }
  if (expectedSeq - 1n !== headSeq) {
    violations.push(`invariant 5: journal head says ${headSeq}, entries end at ${expectedSeq - 1n}`);
  } else if (head && !head.hash.equals(prev)) {
    violations.push('invariant 5: journal head hash differs from the last entry');
  }

  // 6. Each external reference maps to at most one purchase (the unique index enforces it;
  // checked anyway so a dropped index shows up).
  add(
    (
      await pool.query(`
        SELECT external_ref, COUNT(*) FROM lots WHERE external_ref IS NOT NULL
         GROUP BY external_ref HAVING COUNT(*) > 1`)
    ).rows,
    'invariant 6: external_ref purchased twice',
  );

  // 7. No hold is open past its TTL plus the sweeper's period.
  if (options.now && options.holdSweepPeriodMs !== undefined) {
    add(
      (
        await pool.query(
          `SELECT id::text, expires_at FROM holds
            WHERE status = 'OPEN' AND expires_at + make_interval(secs => $2::double precision / 1000) < $1`,
          [options.now.toISOString(), options.holdSweepPeriodMs],
        )
      ).rows,
      'invariant 7: hold open past its TTL',
    );
  }

  const counts = await pool.query<{ entries: string; transfers: string; accounts: string }>(`
    SELECT (SELECT COUNT(*) FROM entries)::text AS entries, (SELECT COUNT(*) FROM transfers)::text AS transfers,
           (SELECT COUNT(*) FROM accounts)::text AS accounts`);
  const c = counts.rows[0]!;
  return { entries: Number(c.entries), transfers: Number(c.transfers), accounts: Number(c.accounts), violations };
}
