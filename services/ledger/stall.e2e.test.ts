import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../lib/clock.js';
import type { DbTimeouts } from '../lib/db.js';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy.js';
import { adminUrl } from '../testing/test-db.js';
import { Bucket, createLedgerClient } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { killChildLedgers, startChildLedger } from './testing/child-ledger.js';
import { healthCheck } from './testing/health-check.js';
import { startTestLedger, testCredentials, type TestLedger } from './testing/ledger-harness.js';

// A ledger whose database connection stalls in the middle of a batch (a paused VM, a half-open
// socket: nothing arrives, nothing errors) holds the journal head's row lock. The connection
// timeouts bound the damage: PostgreSQL ends the stalled session once it has sat idle in its
// transaction for idle_in_transaction_session_timeout, which frees the lock, and the other
// ledgers write again; the stalled ledger reports NOT_SERVING meanwhile and answers its caller
// UNAVAILABLE; once the network is back it serves again. Ledger A reaches PostgreSQL through a
// TCP proxy that the test freezes; ledger B connects directly.

const timeouts: DbTimeouts = {
  statementTimeoutMs: 3_000,
  lockTimeoutMs: 500,
  idleInTransactionTimeoutMs: 1_500,
  queryTimeoutMs: 3_000,
  connectTimeoutMs: 2_000,
};

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const healthOf = (address: string) => healthCheck(address).then((r) => r.status, () => 'UNREACHABLE');

describe('a ledger whose database connection stalls mid-batch', () => {
  let a: TestLedger;
  let b: TestLedger;
  let proxy: TcpProxy;
  let admin: pg.Pool;
  beforeAll(async () => {
    proxy = await startTcpProxy(new URL(adminUrl).hostname, Number(new URL(adminUrl).port || 5432));
    a = await startTestLedger({
      clock: systemClock,
      timeouts,
      connectVia: (url) => proxy.urlFor(url),
      options: { writerStuckMs: 1_000, healthCheckPeriodMs: 100 },
    });
    b = await startTestLedger({ clock: systemClock, timeouts, db: a.db });
    for (const p of [a.pool, a.writePool, b.pool, b.writePool]) p.on('error', () => {});
    admin = new pg.Pool({ connectionString: a.db.url, max: 2 });
    admin.on('error', () => {});
    await b.client.admin.grant({ idempotencyKey: 'seed', userId: 'u-stall', credits: 100n, bucket: Bucket.BUCKET_BONUS });
  });
  afterAll(async () => {
    proxy?.restore();
    await admin?.end();
    await killChildLedgers();
    await b?.close();
    await a?.close();
    await proxy?.close();
  });

  it('the other ledger writes again within the idle-in-transaction timeout; the stalled one is NOT_SERVING, then recovers', async () => {
    expect(await healthOf(a.address)).toBe('SERVING');
    // Hold the journal head so that A's batch is sent and waits for it; then freeze A's link
    // and let the head go: A's backend takes the head lock, answers into the frozen link, and
    // sits idle in its transaction, holding the lock.
    const blocker = await admin.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT seq FROM journal_head FOR UPDATE');
    const stalled = settle(a.client.worker.consume({ idempotencyKey: 'stalled', userId: 'u-stall', credits: 1n }));
    await until('A waits for the head lock', 5_000, async () => {
      const { rows } = await admin.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' LIMIT 1`,
      );
      return rows.length > 0 ? true : undefined;
    });
    proxy.freeze();
    const frozenAt = Date.now();
    await blocker.query('COMMIT');
    blocker.release();

    // B is held up by the lock for a moment (lock_timeout: UNAVAILABLE, retriable), then writes.
    let attempts = 0;
    const written = await until('B writes again', 10_000, async () => {
      attempts += 1;
      const o = await settle(b.client.worker.consume({ idempotencyKey: 'after-stall', userId: 'u-stall', credits: 1n }));
      if (!o.ok) expect(status[o.error.code]).toBe('UNAVAILABLE');
      return o.ok ? Date.now() : undefined;
    });
    expect(written - frozenAt).toBeLessThan(timeouts.idleInTransactionTimeoutMs + 2_500);
    expect(attempts).toBeGreaterThan(1);

    // A noticed: NOT_SERVING (the database does not answer it, its writer is stuck).
    await until('A reports NOT_SERVING', 5_000, async () => ((await healthOf(a.address)) === 'NOT_SERVING' ? true : undefined));
    // A's caller is told to retry; nothing of its command was written.
    const outcome = await stalled;
    expect(outcome.ok ? 'OK' : status[outcome.error.code]).toBe('UNAVAILABLE');
    const { rows } = await admin.query(`SELECT 1 FROM entries WHERE idempotency_key = 'stalled'`);
    expect(rows).toEqual([]);

    // The link comes back: A serves again, and the refused command applies once with its key.
    proxy.cut();
    proxy.restore();
    await until('A reports SERVING again', 10_000, async () => ((await healthOf(a.address)) === 'SERVING' ? true : undefined));
    const retried = await until('A writes again', 10_000, async () => {
      const o = await settle(a.client.worker.consume({ idempotencyKey: 'stalled', userId: 'u-stall', credits: 1n }));
      return o.ok ? o.value : undefined;
    });
    expect(retried.replayed).toBe(false);
    expect((await b.client.worker.getBalance({ userId: 'u-stall' })).available).toBe(98n);
    await b.expectInvariants();
  });

  it('SIGTERM with the database unreachable exits within the drain grace', async () => {
    const credentials = testCredentials();
    const child = await startChildLedger({
      databaseUrl: proxy.urlFor(a.db.url),
      credentials,
      env: { LEDGER_DRAIN_GRACE_MS: '2000', LEDGER_DB_QUERY_TIMEOUT_MS: '60000', LEDGER_DB_STATEMENT_TIMEOUT_MS: '60000' },
    });
    const worker = createLedgerClient(child.address, credentials.find((c) => c.role === 'worker')!.token);
    await worker.getBalance({ userId: 'u-stall' });
    proxy.freeze();
    // A call in flight that the database will never answer.
    const hanging = settle(worker.consume({ idempotencyKey: 'child-hang', userId: 'u-stall', credits: 1n }));
    await new Promise((r) => setTimeout(r, 200));
    const stopAt = Date.now();
    const exit = await child.stop(20_000);
    const tookMs = Date.now() - stopAt;
    proxy.cut();
    proxy.restore();
    expect(tookMs).toBeLessThan(2_000 + 1_000 + 1_500);
    expect(exit.signal).toBeNull();
    const o = await hanging;
    expect(o.ok).toBe(false);
    worker.close();
    await b.expectInvariants();
  });
});
