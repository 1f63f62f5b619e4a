import { generateKeyPairSync } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../testing/test-db.js';
import { recomputeHash } from './audit-hash.js';
import { checkpointValid, signCheckpoint, type Checkpoint } from './checkpoint.js';
import { readJournalPages } from './db-source.js';
import { buildSampleJournal, copyDatabase, tamper, type SampleJournal } from './testing/sample-journal.js';
import { verifyJournal, type InvariantReport, type VerifyOptions } from './verify-journal.js';

// The audit's engine (ledger README §4, audit README): a journal built through the public gRPC
// API verifies; each tamper an owner of the tables could make, with the journal's triggers
// disabled, is detected and located (entry, table, column, expected value).

let sample: SampleJournal;
const copies: TestDatabase[] = [];

beforeAll(async () => {
  sample = await buildSampleJournal();
}, 60_000);

afterAll(async () => {
  for (const c of copies) await c.drop();
  await sample?.db.drop();
});

async function withCopy<T>(name: string, fn: (url: string, pool: pg.Pool) => Promise<T>): Promise<T> {
  const copy = await copyDatabase(sample.db, name);
  copies.push(copy);
  const pool = new pg.Pool({ connectionString: copy.url, max: 2 });
  try {
    return await fn(copy.url, pool);
  } finally {
    await pool.end();
  }
}

const verify = (pool: pg.Pool, options: VerifyOptions = {}) => verifyJournal(pool, { now: sample.endedAt, ...options });

function expectWhole(report: InvariantReport) {
  expect(report.violations).toEqual([]);
  expect(report.first).toBeUndefined();
}

describe('verify', () => {
  it('passes on a journal built through gRPC with every command, and rebuilds every table row', async () => {
    await withCopy('ok', async (_url, pool) => {
      const report = await verify(pool, { checkGetBalance: true, holdSweepPeriodMs: 1_000 });
      expectWhole(report);
      expect(report.entries).toBe(Number(sample.seq.last));
      expect(report.partial).toBe(false);
      const counts = await pool.query<{ a: string; l: string; h: string; t: string }>(
        `SELECT (SELECT COUNT(*) FROM accounts)::text a, (SELECT COUNT(*) FROM lots)::text l,
                (SELECT COUNT(*) FROM holds)::text h, (SELECT COUNT(*) FROM transfers)::text t`,
      );
      expect(report.accounts).toBe(Number(counts.rows[0]!.a));
      expect(report.lots).toBe(Number(counts.rows[0]!.l));
      expect(report.holds).toBe(Number(counts.rows[0]!.h));
      expect(report.transfers).toBe(Number(counts.rows[0]!.t));
      // Every kind of entry is in it.
      const kinds = await pool.query<{ kind: string }>('SELECT DISTINCT kind FROM entries ORDER BY kind');
      expect(kinds.rows.map((r) => r.kind)).toEqual([
        'CAPTURE', 'CONSUME', 'EXPIRE', 'EXTEND_HOLD', 'GRANT', 'HOLD_TIMEOUT', 'PURCHASE', 'REFUND', 'RELEASE',
        'RENEW_SUBSCRIPTION', 'RESERVE', 'REVERSE',
      ]);
    });
  });

  it('verifies a range on its own, anchored at its first entry, without comparing tables', async () => {
    await withCopy('range', async (_url, pool) => {
      const report = await verify(pool, { fromSeq: 5n, toSeq: 12n });
      expectWhole(report);
      expect(report.entries).toBe(8);
      expect(report.partial).toBe(true);
      expect(report.accounts).toBe(0);
    });
  });

  it('the audit hash agrees with the ledger\'s on every entry (independent encoders, same bytes)', async () => {
    await withCopy('hash', async (_url, pool) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        let n = 0;
        for await (const page of readJournalPages(client, 1n, sample.seq.last, 7)) {
          for (const row of page) {
            expect(recomputeHash(row.prev_hash, row)).toBe(row.hash);
            n++;
          }
        }
        expect(n).toBe(Number(sample.seq.last));
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
    });
  });
});

describe('tampering as the tables\' owner, triggers disabled, is detected and located', () => {
  it('a transfer amount changed: the transfer\'s amount, with the amount its recorded balances imply', async () => {
    await withCopy('amount', async (url, pool) => {
      const seq = sample.seq.consume;
      const { rows } = await pool.query<{ a: string }>('SELECT amount::text a FROM transfers WHERE entry_seq = $1 AND idx = 0', [seq.toString()]);
      const amount = BigInt(rows[0]!.a);
      await tamper(url, 'UPDATE transfers SET amount = amount + 5 WHERE entry_seq = $1 AND idx = 0', [seq.toString()]);
      const report = await verify(pool);
      expect(report.first).toMatchObject({
        seq: seq.toString(), table: 'transfers', column: 'amount', key: `transfer ${seq}/0`, expected: amount.toString(), found: (amount + 5n).toString(),
      });
      expect(report.findings).toContainEqual(expect.objectContaining({ seq: seq.toString(), table: 'entries', column: 'hash' }));
    });
  });

  it('an entry\'s metadata changed: that entry\'s hash', async () => {
    await withCopy('meta', async (url, pool) => {
      const seq = sample.seq.capture;
      await tamper(url, `UPDATE entries SET metadata = metadata || '{"upstream.model":"cheaper-model"}' WHERE seq = $1`, [seq.toString()]);
      const report = await verify(pool);
      expect(report.first).toMatchObject({ seq: seq.toString(), table: 'entries', column: 'hash' });
      expect(report.findingCount).toBe(1);
    });
  });

  it('an entry deleted (with its transfers): the missing sequence number', async () => {
    await withCopy('delete', async (url, pool) => {
      const seq = sample.seq.refund;
      await tamper(url, 'DELETE FROM transfers WHERE entry_seq = $1', [seq.toString()]);
      await tamper(url, 'DELETE FROM entries WHERE seq = $1', [seq.toString()]);
      const report = await verify(pool);
      expect(report.first).toMatchObject({ seq: seq.toString(), table: 'entries', column: 'seq', expected: seq.toString(), found: (seq + 1n).toString() });
      expect(report.findings).toContainEqual(expect.objectContaining({ table: 'entries', column: 'prev_hash', seq: (seq + 1n).toString() }));
      // The tables still hold what the deleted refund did: the lot's refunded amount disagrees.
      expect(report.findings).toContainEqual(expect.objectContaining({ table: 'lots', column: 'refunded_micros', expected: '0', found: '5000000' }));
    });
  });

  it('an entry deleted but its transfers left: the orphan transfers are named too', async () => {
    await withCopy('orphan', async (url, pool) => {
      const seq = sample.seq.refund;
      await tamper(url, 'DELETE FROM entries WHERE seq = $1', [seq.toString()]);
      const report = await verify(pool);
      expect(report.first).toMatchObject({ seq: seq.toString(), table: 'entries', column: 'seq' });
      expect(report.findings).toContainEqual(expect.objectContaining({ table: 'transfers', column: 'entry_seq', seq: seq.toString() }));
    });
  });

  it('a lot\'s expires_at set to NULL: the lot, its column, and the expiry its entry journaled', async () => {
    await withCopy('expiry', async (url, pool) => {
      const lot = sample.expiringLot;
      const before = await pool.query<{ e: Date }>('SELECT expires_at AS e FROM lots WHERE account_id = $1', [lot.toString()]);
      await tamper(url, 'UPDATE lots SET expires_at = NULL WHERE account_id = $1', [lot.toString()]);
      const report = await verify(pool);
      // A table row, not an entry, is wrong: no entry is named as bad, the lot's creating entry is cited.
      expect(report.first).toMatchObject({ seq: null, table: 'lots', column: 'expires_at', key: `lot ${lot}`, expected: before.rows[0]!.e.toISOString(), found: 'null' });
      expect(report.first!.message).toContain(`created by entry ${sample.seq.grant}`);
      expect(report.findingCount).toBe(1);
    });
  });

  it('each lot term changed is located: bucket, priority, effective_at, cost basis', async () => {
    await withCopy('terms', async (url, pool) => {
      await tamper(url, `UPDATE lots SET bucket = 'PURCHASED', priority = 0 WHERE account_id = $1`, [sample.expiringLot.toString()]);
      await tamper(url, `UPDATE lots SET effective_at = effective_at - interval '1 day', cost_basis_micros = 1 WHERE account_id = $1`, [
        sample.purchasedLot.toString(),
      ]);
      const report = await verify(pool);
      const located = report.findings.filter((f) => f.table === 'lots').map((f) => `${f.key}.${f.column}`).sort();
      expect(located).toEqual(
        [`lot ${sample.expiringLot}.bucket`, `lot ${sample.expiringLot}.priority`, `lot ${sample.purchasedLot}.cost_basis_micros`, `lot ${sample.purchasedLot}.effective_at`].sort(),
      );
    });
  });

  it('an account total changed: the account, its column, and the total its transfers add up to', async () => {
    await withCopy('total', async (url, pool) => {
      const lot = sample.purchasedLot;
      const row = await pool.query<{ c: string }>('SELECT credits_posted::text c FROM accounts WHERE id = $1', [lot.toString()]);
      await tamper(url, 'UPDATE accounts SET credits_posted = credits_posted + 1000 WHERE id = $1', [lot.toString()]);
      const report = await verify(pool);
      expect(report.findings).toContainEqual(
        expect.objectContaining({ table: 'accounts', column: 'credits_posted', key: `account ${lot} user:alice:lot:${lot}`, expected: row.rows[0]!.c }),
      );
      expect(report.findings.every((f) => f.table !== 'entries' && f.table !== 'transfers')).toBe(true);
    });
  });

  it('a hold closed in the table but not in the journal: the hold and its status', async () => {
    await withCopy('hold', async (url, pool) => {
      await tamper(url, `UPDATE holds SET status = 'RELEASED', closed_seq = 1 WHERE status = 'OPEN'`);
      await tamper(url, `UPDATE holds SET captured_credits = 40 WHERE status = 'CAPTURED'`);
      const report = await verify(pool);
      expect(report.findings).toContainEqual(expect.objectContaining({ table: 'holds', column: 'status', expected: 'OPEN', found: 'RELEASED' }));
      expect(report.findings).toContainEqual(expect.objectContaining({ table: 'holds', column: 'captured_credits', expected: '25', found: '40' }));
    });
  });

  it('a chain recomputed after an edit verifies on its own, and is caught by a signed checkpoint', async () => {
    await withCopy('rewrite', async (url, pool) => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const head = (await pool.query<{ seq: string; hash: string; r: Date }>(`SELECT seq::text, encode(hash, 'hex') hash, recorded_at r FROM journal_head`)).rows[0]!;
      const early = signCheckpoint({ seq: '3', hash: (await pool.query<{ h: string }>(`SELECT encode(hash,'hex') h FROM entries WHERE seq = 3`)).rows[0]!.h, head_recorded_at: '-', signed_at: '2026-11-01T10:00:00.000Z' }, privateKey);
      const checkpoint: Checkpoint = signCheckpoint(
        { seq: head.seq, hash: head.hash, head_recorded_at: head.r.toISOString(), signed_at: '2026-12-01T00:00:00.000Z' },
        privateKey,
      );
      expect(checkpointValid(checkpoint, publicKey)).toBe(true);
      expect(checkpointValid({ ...checkpoint, seq: '1' }, publicKey)).toBe(false);

      // The owner moves the capture's upstream cost in its metadata and recomputes every hash after it.
      const edited = sample.seq.capture;
      await tamper(url, `UPDATE entries SET metadata = metadata || '{"upstream.model":"cheaper-model"}' WHERE seq = $1`, [edited.toString()]);
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const rows = [];
        for await (const page of readJournalPages(client, edited, BigInt(head.seq), 100)) rows.push(...page);
        await client.query('COMMIT');
        let prev = rows[0]!.prev_hash;
        for (const row of rows) {
          row.prev_hash = prev;
          row.hash = recomputeHash(prev, row);
          prev = row.hash;
          await tamper(url, `UPDATE entries SET prev_hash = decode($2, 'hex'), hash = decode($3, 'hex') WHERE seq = $1`, [row.seq, row.prev_hash, row.hash]);
        }
        await tamper(url, `UPDATE journal_head SET hash = decode($1, 'hex')`, [prev]);
      } finally {
        client.release();
      }

      expectWhole(await verify(pool));
      const anchors = [early, checkpoint].map((c) => ({ seq: c.seq, hash: c.hash, label: `#${c.seq}` }));
      const report = await verify(pool, { checkpoints: anchors });
      expect(report.first).toMatchObject({ seq: head.seq, table: 'entries', column: 'hash', expected: head.hash });
      expect(report.first!.message).toContain('after entry 3');
      expect(report.checkpointsMatched).toEqual(['3']);
    });
  });
});
