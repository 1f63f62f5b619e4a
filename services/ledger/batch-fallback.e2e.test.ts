import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// A command that passes every check of the ledger but that PostgreSQL still rejects fails the
// batch it rides in. The ledger then splits the batch and retries each half on its own, so only
// that command fails and its neighbours commit. Validation leaves no such input reachable from
// gRPC any more (NUL bytes, dates past 9999 are refused up front), so this test makes one: a
// trigger in this test's own database rejects one idempotency key.

const NEIGHBOURS = 63;

describe('a command PostgreSQL rejects inside a full batch', () => {
  let t: TestLedger;
  let admin: pg.Pool;
  beforeAll(async () => {
    t = await startTestLedger();
    admin = new pg.Pool({ connectionString: t.db.url, max: 2 });
    admin.on('error', () => {});
    // Inputs: none. Locks: none. Output: a trigger that rejects the entry keyed 'poison'.
    await admin.query(`
      CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'poisoned entry %', NEW.idempotency_key; END $$;
      CREATE TRIGGER reject_poison BEFORE INSERT ON entries
        FOR EACH ROW WHEN (NEW.idempotency_key = 'poison') EXECUTE FUNCTION reject_poison();`);
    for (let u = 0; u < 8; u += 1) {
      await t.client.admin.grant({ idempotencyKey: `seed-${u}`, userId: `u${u}`, credits: 1_000n, bucket: Bucket.BUCKET_BONUS });
    }
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  it('fails alone; its 63 neighbours in the same batch commit; the journal stays whole', async () => {
    // Hold the journal head so that the first command's batch waits, and everything sent after
    // it queues up into the next batch together, poison included.
    const blocker = await admin.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT seq FROM journal_head FOR UPDATE');
    const plug = settle(t.client.worker.consume({ idempotencyKey: 'plug', userId: 'u0', credits: 1n }));
    // Wait until the plug's batch is blocked on the head lock.
    for (let i = 0; i < 200; i += 1) {
      const { rows } = await admin.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (rows[0].n > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const calls = Array.from({ length: NEIGHBOURS + 1 }, (_, i) => {
      const key = i === 17 ? 'poison' : `n-${i}`;
      return settle(t.client.worker.consume({ idempotencyKey: key, userId: `u${i % 8}`, credits: 1n }));
    });
    // Give the calls time to reach the queue, then let the plug through.
    await new Promise((r) => setTimeout(r, 200));
    await blocker.query('COMMIT');
    blocker.release();
    const [plugOutcome, ...outcomes] = await Promise.all([plug, ...calls]);
    expect(plugOutcome!.ok).toBe(true);

    const poison = outcomes[17]!;
    expect(poison.ok ? 'OK' : status[poison.error.code]).toBe('INTERNAL');
    const failed = outcomes.filter((o) => !o.ok);
    expect(failed).toHaveLength(1);
    const { rows } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM entries WHERE idempotency_key LIKE 'n-%'`);
    expect(rows[0]!.n).toBe(NEIGHBOURS);
    const { rows: none } = await admin.query(`SELECT 1 FROM entries WHERE idempotency_key = 'poison'`);
    expect(none).toEqual([]);
    // The poisoned key stored nothing, so it may be used again once the cause is gone.
    await admin.query('DROP TRIGGER reject_poison ON entries');
    const retried = await t.client.worker.consume({ idempotencyKey: 'poison', userId: 'u1', credits: 1n });
    expect(retried.replayed).toBe(false);
    await t.expectInvariants();
  });
});
