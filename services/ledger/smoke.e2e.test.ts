import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket } from '../generated/proto/credits/ledger/v1/ledger.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

describe('smoke', () => {
  let t: TestLedger;
  beforeAll(async () => {
    t = await startTestLedger();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('grants, purchases, consumes, reserves and captures', async () => {
    const g = await t.client.admin.grant({ idempotencyKey: 'g1', userId: 'u1', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    expect(g.entryId).toBe(1n);
    const p = await t.client.payments.purchase({
      idempotencyKey: 'p1', userId: 'u1', credits: 500n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 299_990_000n, currency: 'USD', externalRef: 'cs_1',
    });
    expect(p.entryId).toBe(2n);
    const c = await t.client.worker.consume({ idempotencyKey: 'c1', userId: 'u1', credits: 15n });
    expect(c.allocations).toEqual([{ lotId: g.lotId, credits: 10n }, { lotId: p.lotId, credits: 5n }]);
    const r = await t.client.worker.reserve({ idempotencyKey: 'r1', userId: 'u1', credits: 100n });
    const cap = await t.client.worker.capture({ idempotencyKey: 'cap1', holdId: r.holdId, credits: 60n, upstream: { amountMicros: 80_000n, currency: 'USD', requestId: 'pred_1', model: 'm' } });
    expect(cap.releasedCredits).toBe(40n);
    const b = await t.client.worker.getBalance({ userId: 'u1' });
    expect(b.available).toBe(435n);
    const e = await t.client.auditor.getEntry({ entryId: cap.entryId });
    expect(e.entry?.transfers.length).toBeGreaterThan(0);
    const list = await t.client.auditor.listEntries({ userId: 'u1', pageSize: 2 });
    expect(list.entries.length).toBe(2);
    await t.expectInvariants();
  });
});
