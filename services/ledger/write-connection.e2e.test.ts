import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket } from '../generated/proto/credits/ledger/v1/ledger.js';
import { settle } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// The batch writer keeps its connection from one batch to the next while work keeps coming
// (store/batch-connection.ts), and gives it back when the queue runs dry. These tests check
// both halves of that, and that losing the held connection in the middle of a write storm
// costs callers a retriable UNAVAILABLE at worst, never an acknowledged write.

const USERS = 8;
const LANES = 40;

/** Terminates the writer's backends (the harness's write pool is named credit-ledger). */
async function terminateWriter(admin: pg.Pool): Promise<number> {
  // Inputs: none. Locks: none. Output: one row per backend signalled.
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'credit-ledger' AND pid <> pg_backend_pid()`,
  );
  for (const { pid } of rows) await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  return rows.length;
}

describe('the batch writer connection', () => {
  let t: TestLedger;
  let admin: pg.Pool;
  beforeAll(async () => {
    t = await startTestLedger();
    admin = new pg.Pool({ connectionString: t.db.url, max: 1 });
    admin.on('error', () => {});
    for (let u = 0; u < USERS; u += 1) {
      await t.client.admin.grant({ idempotencyKey: `seed-${u}`, userId: `u${u}`, credits: 1_000_000n, bucket: Bucket.BUCKET_BONUS });
    }
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  it('is returned to the pool once the queue runs dry', async () => {
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => t.client.worker.consume({ idempotencyKey: `idle-${i}`, userId: `u${i % USERS}`, credits: 1n })),
    );
    // The queue answers its last batch and then releases; both happen before the next turn.
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.writePool.totalCount).toBeGreaterThan(0);
    expect(t.writePool.idleCount).toBe(t.writePool.totalCount);
    await t.expectInvariants();
  });

  it('survives its backend being terminated mid-storm: acknowledged writes are journaled, the rest fail UNAVAILABLE', async () => {
    const acked = new Map<string, bigint>();
    const refused: { key: string; userId: string; code: number; message: string }[] = [];
    let seq = 0;
    let stopping = false;
    const lane = async (): Promise<void> => {
      while (!stopping) {
        const key = `storm-${seq}`;
        const userId = `u${seq % USERS}`;
        seq += 1;
        const outcome = await settle(t.client.worker.consume({ idempotencyKey: key, userId, credits: 1n }));
        if (outcome.ok) acked.set(key, outcome.value.entryId);
        else refused.push({ key, userId, code: outcome.error.code, message: outcome.error.details });
      }
    };
    const lanes = Array.from({ length: LANES }, lane);
    // Let the writer settle into holding its connection, then cut it, twice.
    const ackedBefore: number[] = [];
    for (let kill = 0; kill < 2; kill += 1) {
      const target = acked.size + 200;
      while (acked.size < target) await new Promise((resolve) => setTimeout(resolve, 5));
      ackedBefore.push(acked.size);
      expect(await terminateWriter(admin)).toBeGreaterThan(0);
    }
    const afterKills = acked.size;
    while (acked.size < afterKills + 200) await new Promise((resolve) => setTimeout(resolve, 5));
    stopping = true;
    await Promise.all(lanes);

    // Only the database's loss may refuse a call here, and as a retriable status.
    expect(refused.filter((r) => r.code !== status.UNAVAILABLE)).toEqual([]);
    // Every acknowledged write is in the journal under its key, with the id it was answered.
    const { rows } = await t.pool.query<{ idempotency_key: string; seq: string }>(
      `SELECT idempotency_key, seq::text FROM entries WHERE idempotency_key LIKE 'storm-%'`,
    );
    const journaled = new Map(rows.map((r) => [r.idempotency_key, BigInt(r.seq)]));
    for (const [key, entryId] of acked) expect(journaled.get(key)).toBe(entryId);
    // A refused call retried with its key either replays what a batch committed before its
    // connection died, or applies now; either way it is journaled exactly once.
    for (const r of refused) {
      const retried = await t.client.worker.consume({ idempotencyKey: r.key, userId: r.userId, credits: 1n });
      const { rows: again } = await t.pool.query<{ seq: string }>('SELECT seq::text FROM entries WHERE idempotency_key = $1', [r.key]);
      expect(again.map((x) => BigInt(x.seq))).toEqual([retried.entryId]);
    }
    await t.expectInvariants();
  });
});
