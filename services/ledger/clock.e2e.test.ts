import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock, offsetClock, systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/logger.js';
import { startMetricsServer } from '../lib/metrics-server.js';
import { Bucket, errorReason } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { healthCheck } from './testing/health-check.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// One notion of ledger time for writes, reads, holds and sweepers: each process's clock, but
// never behind the last entry any process recorded (the journal head's recorded_at); and a
// process whose clock is off the database's by more than LEDGER_CLOCK_SKEW_MS_MAX refuses
// writes and reports NOT_SERVING. Two ledgers share one database here with clocks apart.

const started: TestLedger[] = [];
afterAll(async () => {
  for (const t of started.reverse()) await t.close();
});

async function pair(aClock: ManualClock, bClock: ManualClock) {
  const a = await startTestLedger({ clock: aClock });
  const b = await startTestLedger({ clock: bClock, db: a.db });
  started.push(a, b);
  return { a, b };
}

async function recordedAts(t: TestLedger): Promise<number[]> {
  const { rows } = await t.pool.query<{ recorded_at: Date }>('SELECT recorded_at FROM entries ORDER BY seq');
  return rows.map((r) => r.recorded_at.getTime());
}

const nonDecreasing = (xs: number[]) => xs.every((x, i) => i === 0 || xs[i - 1]! <= x);

describe('ledger time across processes', () => {
  for (const [label, aheadMs] of [
    ['the writer runs ahead of the reader', 5_000],
    ['the writer runs behind the reader', -5_000],
  ] as const) {
    it(`${label}: a lot granted on one ledger is spendable on the other at once`, async () => {
      const base = '2026-11-24T12:00:00.000Z';
      const writerClock = new ManualClock(new Date(Date.parse(base) + aheadMs));
      const readerClock = new ManualClock(base);
      const { a: writer, b: reader } = await pair(writerClock, readerClock);
      const userId = `u-${aheadMs}`;
      await writer.client.admin.grant({ idempotencyKey: `g-${aheadMs}`, userId, credits: 10n, bucket: Bucket.BUCKET_BONUS });
      const b = await reader.client.worker.getBalance({ userId });
      expect({ balance: b.balance, available: b.available }).toEqual({ balance: 10n, available: 10n });
      expect((await reader.client.worker.quote({ userId, credits: 10n })).sufficient).toBe(true);
      await reader.client.worker.consume({ idempotencyKey: `c1-${aheadMs}`, userId, credits: 4n });
      await writer.client.worker.consume({ idempotencyKey: `c2-${aheadMs}`, userId, credits: 4n });
      await reader.client.worker.consume({ idempotencyKey: `c3-${aheadMs}`, userId, credits: 2n });
      expect((await writer.client.worker.getBalance({ userId })).available).toBe(0n);
      expect(nonDecreasing(await recordedAts(writer))).toBe(true);
      await reader.expectInvariants();
    });
  }

  it('a clock stepping back: entries keep their order, and a hold lives its full TTL in ledger time', async () => {
    const clock = new ManualClock('2026-11-24T12:00:00.000Z');
    const t = await startTestLedger({ clock });
    started.push(t);
    await t.client.admin.grant({ idempotencyKey: 'g', userId: 'u-back', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    clock.advance(60_000);
    await t.client.worker.consume({ idempotencyKey: 'c1', userId: 'u-back', credits: 1n });
    const aheadMs = clock.now().getTime();
    clock.advance(-60_000); // NTP steps the clock back a minute.
    const r = await t.client.worker.reserve({ idempotencyKey: 'r', userId: 'u-back', credits: 2n, ttlMs: 10_000n });
    // The hold's TTL counts from ledger time (the last recorded entry), not the stepped-back clock.
    expect(r.expiresAt!.getTime()).toBe(aheadMs + 10_000);
    await t.client.worker.consume({ idempotencyKey: 'c2', userId: 'u-back', credits: 1n });
    expect(nonDecreasing(await recordedAts(t))).toBe(true);
    // Still held until ledger time passes its expiry: the sweeper agrees with the write path.
    clock.set(new Date(aheadMs + 9_999));
    expect(await t.ledger.sweeper.sweepOnce()).toBe(0);
    clock.set(new Date(aheadMs + 10_000));
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    expect((await t.client.worker.getBalance({ userId: 'u-back' })).available).toBe(8n);
    await t.expectInvariants();
  });
});

describe('a process whose clock strays from the database', () => {
  for (const offsetMs of [60_000, -60_000]) {
    it(`${offsetMs > 0 ? 'ahead' : 'behind'} by a minute: NOT_SERVING, writes refused UNAVAILABLE, reads served`, async () => {
      const honest = await startTestLedger({ clock: systemClock, options: { clockSkewMsMax: 2_000 } });
      const skewed = await startTestLedger({
        clock: offsetClock(systemClock, offsetMs),
        db: honest.db,
        options: { clockSkewMsMax: 2_000, healthCheckPeriodMs: 50 },
      });
      started.push(honest, skewed);
      await honest.client.admin.grant({ idempotencyKey: 'g', userId: 'u-skew', credits: 5n, bucket: Bucket.BUCKET_BONUS });
      for (let i = 0; i < 100 && skewed.ledger.health.writeRefusal() === null; i += 1) await new Promise((r) => setTimeout(r, 20));
      expect((await healthCheck(skewed.address)).status).toBe('NOT_SERVING');
      expect((await healthCheck(honest.address)).status).toBe('SERVING');
      // The plain HTTP readiness route says the same (what a probe uses when gRPC serves TLS only).
      const log = createLogger('clock-test', 'silent');
      const http = await Promise.all(
        [skewed, honest].map((t) => startMetricsServer('127.0.0.1:0', t.ledger.metrics.registry, log, () => t.ledger.serving)),
      );
      try {
        const ready = await Promise.all(http.map(async (m) => {
          const res = await fetch(`http://127.0.0.1:${m.port}/readyz`);
          return [res.status, (await res.text()).trim()];
        }));
        expect(ready).toEqual([[503, 'NOT_SERVING'], [200, 'SERVING']]);
      } finally {
        await Promise.all(http.map((m) => m.close()));
      }
      const refused = await settle(skewed.client.worker.consume({ idempotencyKey: 'c-skewed', userId: 'u-skew', credits: 1n }));
      expect(refused.ok ? 'OK' : status[refused.error.code]).toBe('UNAVAILABLE');
      if (!refused.ok) {
        expect(refused.error.details).toMatch(/clock is -?\d+ ms off the database's \(at most 2000 ms allowed\)/);
        expect(errorReason(refused.error)).toBeUndefined();
      }
      expect((await skewed.client.worker.getBalance({ userId: 'u-skew' })).available).toBe(5n);
      // The same key goes through on the honest process: nothing was stored for it.
      const ok = await honest.client.worker.consume({ idempotencyKey: 'c-skewed', userId: 'u-skew', credits: 1n });
      expect(ok.replayed).toBe(false);
      await honest.expectInvariants();
    });
  }

  it('within the bound: SERVING and writing', async () => {
    const t = await startTestLedger({ clock: offsetClock(systemClock, 500), options: { clockSkewMsMax: 2_000, healthCheckPeriodMs: 50 } });
    started.push(t);
    await t.ledger.health.checkOnce();
    expect(Math.abs(t.ledger.health.skewMs - 500)).toBeLessThan(400);
    expect((await healthCheck(t.address)).status).toBe('SERVING');
    await t.client.admin.grant({ idempotencyKey: 'g', userId: 'u-near', credits: 1n, bucket: Bucket.BUCKET_BONUS });
    await t.expectInvariants();
  });
});
