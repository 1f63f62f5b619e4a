import type pg from 'pg';
import { buckets } from '../domain/types.js';
import { readBalance } from '../store/read-balance.js';
import { compareAccounts, compareHolds, compareLots, compareUsers, extraHolds } from './compare-tables.js';
import { readJournalPages, walkClient } from './db-source.js';
import { formatFinding, type Finding } from './journal-row.js';
import { JournalReplay, type CheckpointAnchor, type HoldRebuild } from './replay.js';

/**
 * Checks the invariants of ledger README §4 against a database: every ledger test ends with it
 * (`expectInvariants()`), and `npm run audit -- verify` runs it on any journal. The journal is
 * walked once, in pages, inside one read-only REPEATABLE READ transaction (a consistent
 * snapshot while the ledger keeps writing); JournalReplay checks each entry and rebuilds
 * accounts, lots and holds from the journal alone, which are then compared with the tables.
 * Nothing here uses the write path's code: the hash is recomputed by the audit's own encoder.
 */
export interface InvariantReport {
  /** Entries and transfers walked. */
  entries: number;
  transfers: number;
  /** Rows of the accounts table compared (0 for a partial range). */
  accounts: number;
  lots: number;
  holds: number;
  fromSeq: bigint;
  toSeq: bigint;
  headSeq: bigint;
  headHash: string;
  /** The hash of the last entry walked (the head's when the range reaches it). */
  lastHash: string;
  /** True when the range does not start at entry 1 or end at the head: tables were not compared. */
  partial: boolean;
  checkpointsMatched: string[];
  findings: Finding[];
  findingCount: number;
  /** The finding earliest in the journal (the first bad entry), if any. */
  first: Finding | undefined;
  /** Findings as sentences; empty when the journal is whole. */
  violations: string[];
  elapsedMs: number;
}

export interface VerifyProgress {
  checkedSeq: bigint;
  fromSeq: bigint;
  toSeq: bigint;
  entries: number;
}

export interface VerifyOptions {
  /** First entry to check (default 1: from genesis). */
  fromSeq?: bigint;
  /** Last entry to check (default: the head). */
  toSeq?: bigint;
  /** Entries per page of the walk. */
  pageSize?: number;
  /** With `now`, invariant 7: no hold is open past its TTL plus this period. */
  holdSweepPeriodMs?: number;
  now?: Date;
  /** Signature-checked checkpoints the journal must still pass through. */
  checkpoints?: readonly CheckpointAnchor[];
  /** Invariant 4 through the read path: each user's GetBalance against the rebuilt lots. */
  checkGetBalance?: boolean;
  /** Called after each page, for progress bars. */
  onProgress?: (progress: VerifyProgress) => void;
  signal?: AbortSignal;
}

export async function verifyJournal(pool: pg.Pool, options: VerifyOptions = {}): Promise<InvariantReport> {
  const started = performance.now();
  const client = await walkClient(pool);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const report = await verifyInSnapshot(client, pool, options);
      return { ...report, elapsedMs: performance.now() - started };
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  } finally {
    await client.end();
  }
}

async function verifyInSnapshot(
  client: pg.ClientBase,
  pool: pg.Pool,
  options: VerifyOptions,
): Promise<Omit<InvariantReport, 'elapsedMs'>> {
  // Inputs: none. Locks: none (snapshot read). Output: the journal head.
  const head = (await client.query<{ seq: string; hash: string }>(`SELECT seq::text, encode(hash, 'hex') AS hash FROM journal_head WHERE id = 1`))
    .rows[0];
  const headSeq = BigInt(head?.seq ?? '0');
  const fromSeq = options.fromSeq ?? 1n;
  const toSeq = options.toSeq === undefined || options.toSeq > headSeq ? headSeq : options.toSeq;
  const whole = fromSeq === 1n && toSeq === headSeq;

  const closed: HoldRebuild[] = [];
  const pendingCompares: Promise<void>[] = [];
  const replay = new JournalReplay({
    fromSeq,
    checkpoints: options.checkpoints,
    onHoldClosed: (hold) => {
      if (whole) closed.push(hold);
    },
  });
  const report = (f: Finding) => replay.report(f);
  const flushHolds = () => {
    if (closed.length === 0) return;
    // Queued on the same connection behind the next page's FETCH: compared while Node checks.
    pendingCompares.push(compareHolds(client, closed.splice(0), report));
  };

  if (toSeq >= fromSeq) {
    const orphans = (list: { entrySeq: string; count: number }[]) => {
      for (const o of list) {
        report({
          seq: o.entrySeq, table: 'transfers', column: 'entry_seq', key: `transfer ${o.entrySeq}/*`, expected: 'an entry',
          found: `${o.count} transfer(s) and no entry`, message: 'transfers whose entry is missing (the entry was deleted)',
        });
      }
    };
    for await (const page of readJournalPages(client, fromSeq, toSeq, options.pageSize ?? 2_000, orphans)) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('verify aborted');
      for (const row of page) replay.apply(row);
      if (closed.length >= 1_000) flushHolds();
      options.onProgress?.({ checkedSeq: BigInt(replay.lastSeq ?? '0'), fromSeq, toSeq, entries: replay.entries });
    }
  }
  flushHolds();
  await Promise.all(pendingCompares);

  const lastSeq = BigInt(replay.lastSeq ?? (fromSeq - 1n).toString());
  if (lastSeq !== toSeq) {
    report({
      seq: (lastSeq + 1n).toString(), table: 'entries', column: 'seq', key: `entry ${lastSeq + 1n}`, expected: `entries up to ${toSeq}`,
      found: replay.lastSeq === null ? 'no entries' : `the last is ${lastSeq}`,
      message: 'entries at the end of the range are missing (deleted?)',
    });
  }
  for (const [seq, anchor] of new Map((options.checkpoints ?? []).map((c) => [c.seq, c]))) {
    if (BigInt(seq) > headSeq) {
      report({
        seq, table: 'entries', column: 'seq', key: `entry ${seq}`, expected: `the journal to reach checkpoint ${anchor.label}`,
        found: `head ${headSeq}`, message: 'the journal is shorter than a published checkpoint: entries were removed',
      });
    }
  }

  let accounts = 0;
  let lots = 0;
  if (whole) {
    if (replay.lastHash !== (head?.hash ?? replay.lastHash)) {
      report({
        seq: head!.seq, table: 'journal_head', column: 'hash', key: 'head', expected: replay.lastHash, found: head!.hash,
        message: 'the journal head does not name the last entry\'s hash',
      });
    }
    // Every transfer belongs to an entry the walk saw.
    // Inputs: none. Locks: none. Output: the number of transfers.
    const transferRows = BigInt((await client.query<{ n: string }>('SELECT COUNT(*)::text AS n FROM transfers')).rows[0]!.n);
    // Orphans inside the range were reported while paging; this catches any beyond it.
    if (transferRows !== BigInt(replay.transfers) && !replay.findings.some((f) => f.table === 'transfers' && f.column === 'entry_seq')) {
      // Inputs: none. Locks: none. Output: transfers whose entry does not exist.
      const orphans = await client.query<{ entry_seq: string; idx: number }>(
        `SELECT t.entry_seq::text, t.idx FROM transfers t WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.seq = t.entry_seq) LIMIT 20`,
      );
      for (const o of orphans.rows) {
        report({
          seq: o.entry_seq, table: 'transfers', column: 'entry_seq', key: `transfer ${o.entry_seq}/${o.idx}`, expected: 'an entry',
          found: 'none', message: 'a transfer whose entry is missing (the entry was deleted)',
        });
      }
      if (orphans.rows.length === 0) {
        report({
          seq: null, table: 'transfers', column: 'entry_seq', key: 'all', expected: String(replay.transfers), found: String(transferRows),
          message: 'the transfers table holds a different number of rows than the entries walked',
        });
      }
    }
    accounts = await compareAccounts(client, replay, report);
    lots = await compareLots(client, replay, report, options.now);
    await compareHolds(client, [...replay.openHolds.values()], report);
    // Inputs: none. Locks: none. Output: the number of holds.
    const holdRows = BigInt((await client.query<{ n: string }>('SELECT COUNT(*)::text AS n FROM holds')).rows[0]!.n);
    if (holdRows !== BigInt(replay.holdsSeen)) await extraHolds(client, report);
    await compareUsers(client, replay, report);

    // Invariant 3: held credits are exactly the open holds' legs.
    const owned = new Set<string>();
    for (const h of replay.openHolds.values()) for (const leg of h.legs) owned.add(leg);
    for (const leg of replay.pendingLegs.keys()) {
      const [seq] = leg.split('/');
      if (!owned.has(leg)) {
        report({
          seq: seq!, table: 'transfers', column: 'kind', key: `transfer ${leg}`, expected: 'posted or voided', found: 'PENDING',
          message: 'a pending transfer that no open hold owns',
        });
      }
    }

    // Invariant 7: no hold is open past its TTL plus the sweeper's period.
    if (options.now && options.holdSweepPeriodMs !== undefined) {
      const limit = options.now.getTime() - options.holdSweepPeriodMs;
      for (const h of replay.openHolds.values()) {
        if (Date.parse(h.expires_at) < limit) {
          report({
            seq: h.reserve_seq, table: 'holds', column: 'status', key: `hold ${h.id}`, expected: 'EXPIRED (timed out)', found: 'OPEN',
            message: `invariant 7: open past its TTL (${h.expires_at}) plus the sweeper's period`,
          });
        }
      }
    }

    // Invariant 4: lot balances add up to the bucket balances GetBalance reports.
    if (options.checkGetBalance) await checkGetBalance(pool, replay, report, options.now ?? new Date());
  }

  const findings = replay.findings;
  return {
    entries: replay.entries,
    transfers: replay.transfers,
    accounts,
    lots,
    holds: replay.holdsSeen,
    fromSeq,
    toSeq,
    headSeq,
    headHash: head?.hash ?? '',
    lastHash: replay.lastHash,
    partial: !whole,
    checkpointsMatched: replay.checkpointsMatched,
    findings,
    findingCount: replay.findingCount,
    first: replay.firstFinding,
    violations: findings.map(formatFinding),
  };
}

async function checkGetBalance(pool: pg.Pool, replay: JournalReplay, report: (f: Finding) => void, now: Date): Promise<void> {
  const expected = new Map<string, Map<string, { balance: bigint; held: bigint }>>();
  for (const lot of replay.lots.values()) {
    const a = replay.accounts.get(lot.account_id);
    const byBucket = expected.get(lot.user_id) ?? new Map<string, { balance: bigint; held: bigint }>();
    const sum = byBucket.get(String(lot.bucket)) ?? { balance: 0n, held: 0n };
    sum.balance += BigInt(a?.balance ?? 0n);
    sum.held += BigInt(a?.held ?? 0n);
    byBucket.set(String(lot.bucket), sum);
    expected.set(lot.user_id, byBucket);
  }
  for (const [userId, byBucket] of expected) {
    const reported = await readBalance(pool, userId, now);
    for (const bucket of buckets) {
      const want = byBucket.get(bucket) ?? { balance: 0n, held: 0n };
      const got = reported.buckets.find((b) => b.bucket === bucket);
      if (!got || got.balance !== want.balance || got.held !== want.held) {
        report({
          seq: null, table: 'GetBalance', column: bucket, key: `user ${userId}`, expected: `${want.balance} (${want.held} held)`,
          found: `${got?.balance} (${got?.held} held)`, message: 'invariant 4: GetBalance disagrees with the lots rebuilt from the journal',
        });
      }
    }
  }
}
