import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../testing/tcp-proxy.js';
import { adminUrl } from '../testing/test-db.js';
import { Bucket } from './client/index.js';
import { settle, type Outcome } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// The database goes away under a running ledger (its connections reset, new ones refused):
// every call, read or write, is answered UNAVAILABLE (retriable, the same idempotency key is
// safe), never INTERNAL, which is kept for bugs; and once the database is back, the ledger
// serves again without a restart. The ledger reaches PostgreSQL through a local TCP proxy that
// the test cuts.

const codeOf = (o: Outcome<unknown>) => (o.ok ? 'OK' : status[o.error.code]);

describe('database outage', () => {
  let t: TestLedger;
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = await startTcpProxy(new URL(adminUrl).hostname, Number(new URL(adminUrl).port || 5432));
    t = await startTestLedger({ connectVia: (url) => proxy.urlFor(url) });
    t.pool.on('error', () => {});
    t.writePool.on('error', () => {});
    await t.client.admin.grant({ idempotencyKey: 'seed', userId: 'u-out', credits: 100n, bucket: Bucket.BUCKET_BONUS });
  });
  afterAll(async () => {
    proxy?.restore();
    await t?.close();
    await proxy?.close();
  });

  it('reads and writes during the outage are UNAVAILABLE; after it, the same keys apply once', async () => {
    const { entryId } = await t.client.worker.consume({ idempotencyKey: 'before', userId: 'u-out', credits: 1n });
    proxy.refuse();
    proxy.cut();
    const calls = await Promise.all([
      settle(t.client.auditor.getBalance({ userId: 'u-out' })),
      settle(t.client.auditor.getEntry({ entryId })),
      settle(t.client.auditor.listEntries({ userId: 'u-out' })),
      settle(t.client.worker.quote({ userId: 'u-out', credits: 1n })),
      settle(t.client.worker.consume({ idempotencyKey: 'during-1', userId: 'u-out', credits: 1n })),
      settle(t.client.worker.reserve({ idempotencyKey: 'during-2', userId: 'u-out', credits: 1n })),
    ]);
    expect(calls.map(codeOf)).toEqual(Array(calls.length).fill('UNAVAILABLE'));
    for (const c of calls) if (!c.ok) expect(c.error.details).toMatch(/unavailable/i);

    proxy.restore();
    // The pools reconnect on their own; the refused writes go through with their keys.
    let balance: Outcome<{ available: bigint }> = { ok: false } as never;
    for (let i = 0; i < 50; i += 1) {
      balance = await settle(t.client.auditor.getBalance({ userId: 'u-out' }));
      if (balance.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(codeOf(balance)).toBe('OK');
    const retried = await t.client.worker.consume({ idempotencyKey: 'during-1', userId: 'u-out', credits: 1n });
    expect(retried.replayed).toBe(false);
    const again = await t.client.worker.consume({ idempotencyKey: 'during-1', userId: 'u-out', credits: 1n });
    expect(again.replayed).toBe(true);
    expect((await t.client.auditor.getBalance({ userId: 'u-out' })).available).toBe(98n);
    await t.expectInvariants();
  });
});
