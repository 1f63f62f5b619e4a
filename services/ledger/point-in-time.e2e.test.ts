import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, RefundReason, type Entry, type GetBalanceResponse } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { settle, type Outcome } from './testing/call-outcome.js';

// Reads of the journal at a point in time (ledger README §4: balance-after rows, §6 GetBalance
// as_of, Quote, StreamJournal), through the real gRPC client.

const minuteMs = 60_000;
const dayMs = 86_400_000;

/** Resolves with the iterator's next value, or rejects after `ms`. */
async function nextWithin<T>(it: AsyncIterator<T>, ms: number): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no stream message within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('point-in-time reads', () => {
  const clock = new ManualClock('2026-11-01T00:00:00.000Z');
  let t: TestLedger;
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;

  beforeAll(async () => {
    t = await startTestLedger({ clock });
  });
  afterAll(async () => {
    await t?.close();
  });

  const head = async () => BigInt((await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);
  const balance = (userId: string, asOf?: Date) =>
    t.client.auditor.getBalance(asOf === undefined ? { userId } : { userId, asOf });

  it('GetBalance as_of a past time answers what GetBalance said at that time', async () => {
    const users = ['pa', 'pb'];
    const seen: { at: Date; userId: string; answer: GetBalanceResponse }[] = [];
    const record = async () => {
      for (const userId of users) {
        const answer = await settle(balance(userId));
        if (answer.ok) seen.push({ at: clock.now(), userId, answer: answer.value });
      }
    };
    const step = async (advanceMs: number, action: () => Promise<unknown>) => {
      clock.advance(advanceMs);
      await action();
      await record();
    };
    const nov = { start: new Date('2026-11-01T00:00:00Z'), end: new Date('2026-12-01T00:00:00Z') };
    const dec = { start: nov.end, end: new Date('2027-01-01T00:00:00Z') };
    const renew = (userId: string, p: typeof nov, ref: string) =>
      t.client.payments.renewSubscription({
        idempotencyKey: key('renew'), userId, plan: 'pro', periodStart: p.start, periodEnd: p.end,
        credits: 100n, amountMicros: 9_990_000n, currency: 'USD', externalRef: ref,
      });
    let holdId = '';
    let hold2 = '';
    await step(0, () => renew('pa', nov, 'in_pa_nov'));
    await step(1, () => t.client.admin.grant({ idempotencyKey: key('g'), userId: 'pb', credits: 30n, bucket: Bucket.BUCKET_BONUS }));
    await step(5 * minuteMs, () =>
      t.client.payments.purchase({
        idempotencyKey: key('p'), userId: 'pa', credits: 500n, bucket: Bucket.BUCKET_PURCHASED,
        amountMicros: 299_990_000n, currency: 'USD', externalRef: 'cs_pa',
      }),
    );
    await step(1, () =>
      t.client.admin.grant({
        idempotencyKey: key('g'), userId: 'pa', credits: 25n, bucket: Bucket.BUCKET_BONUS,
        expiresAt: new Date('2026-11-20T00:00:00Z'),
      }),
    );
    await step(dayMs, () => t.client.worker.consume({ idempotencyKey: key('c'), userId: 'pa', credits: 120n }));
    await step(minuteMs, async () => {
      holdId = (await t.client.worker.reserve({ idempotencyKey: key('r'), userId: 'pa', credits: 40n, ttlMs: 600_000n })).holdId;
    });
    await step(1, async () => {
      hold2 = (await t.client.worker.reserve({ idempotencyKey: key('r'), userId: 'pb', credits: 10n, ttlMs: 600_000n })).holdId;
    });
    await step(minuteMs, () => t.client.worker.capture({ idempotencyKey: key('cap'), holdId, credits: 15n }));
    await step(20 * minuteMs, () => t.ledger.sweeper.sweepOnce()); // pb's hold times out
    await step(dayMs, () => t.client.payments.refund({ idempotencyKey: key('ref'), externalRef: 'cs_pa', amountMicros: 100_000_000n, reason: RefundReason.REFUND_REASON_REFUND }));
    await step(20 * dayMs, () => t.ledger.expirySweeper.sweepOnce()); // the bonus lot expired on Nov 20
    await step(1, () => t.client.worker.consume({ idempotencyKey: key('c'), userId: 'pb', credits: 30n }));
    clock.set(dec.start);
    await step(0, () => renew('pa', dec, 'in_pa_dec'));
    await step(1, () => t.client.worker.consume({ idempotencyKey: key('c'), userId: 'pa', credits: 1n }));
    expect(hold2).not.toBe('');
    expect(seen.length).toBeGreaterThan(20);

    // Later, every recorded answer is reproduced by as_of: at the very instant, and 1 ms before
    // the next step (nothing happened in between).
    clock.advance(3 * dayMs);
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'pa', credits: 1n, bucket: Bucket.BUCKET_BONUS });
    const steps = [...new Set(seen.map((s) => s.at.getTime()))].sort((a, b) => a - b);
    for (const s of seen) {
      expect({ at: s.at, userId: s.userId, answer: await balance(s.userId, s.at) }).toEqual({ at: s.at, userId: s.userId, answer: s.answer });
      const next = steps.find((x) => x > s.at.getTime());
      if (next !== undefined && next - 1 > s.at.getTime()) {
        const justBefore = new Date(next - 1);
        // Availability is evaluated at as_of: it is the same unless a lot expires in between.
        const asOf = await balance(s.userId, justBefore);
        expect({ at: justBefore, userId: s.userId, balance: asOf.balance, held: asOf.held }).toEqual({
          at: justBefore,
          userId: s.userId,
          balance: s.answer.balance,
          held: s.answer.held,
        });
      }
    }
    // A user the ledger had not seen yet at as_of is NOT_FOUND.
    const before = await settle(balance('pb', new Date(nov.start.getTime())));
    expect(before.ok ? 'found' : before.error.code).toBe(status.NOT_FOUND);
    const now = await balance('pa');
    expect(await balance('pa', clock.now())).toEqual(now);
    await t.expectInvariants();
  });

  it('Quote writes nothing and draws exactly what the Consume after it draws', async () => {
    const u = 'pq';
    clock.advance(dayMs);
    const t0 = clock.now().getTime();
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: u, credits: 20n, bucket: Bucket.BUCKET_PURCHASED, priority: 2 });
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: u, credits: 20n, bucket: Bucket.BUCKET_PURCHASED, priority: 1 });
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: u, credits: 15n, bucket: Bucket.BUCKET_BONUS });
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: u, credits: 10n, bucket: Bucket.BUCKET_BONUS, expiresAt: new Date(t0 + 2 * dayMs) });
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: u, credits: 10n, bucket: Bucket.BUCKET_SUBSCRIPTION, expiresAt: new Date(t0 + 2 * dayMs) });
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: u, credits: 7n, bucket: Bucket.BUCKET_BONUS, effectiveAt: new Date(t0 + dayMs) });
    await t.client.worker.reserve({ idempotencyKey: key('r'), userId: u, credits: 12n, ttlMs: 3_600_000n });

    for (const credits of [1n, 5n, 9n, 14n, 30n]) {
      const h = await head();
      const before = await balance(u);
      const q = await t.client.worker.quote({ userId: u, credits });
      expect(await head()).toBe(h);
      expect(await balance(u)).toEqual(before);
      expect(q.sufficient).toBe(true);
      expect(q.available).toBe(before.available);
      expect(q.policyVersion).toBe('drawdown-v1');
      expect(q.allocations.reduce((s, a) => s + a.credits, 0n)).toBe(credits);
      const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: u, credits });
      expect({ credits, allocations: c.allocations }).toEqual({ credits, allocations: q.allocations });
      expect((await t.client.auditor.getEntry({ entryId: c.entryId })).entry?.policyVersion).toBe(q.policyVersion);
    }
    // More than is available: not sufficient, no allocation, nothing written; Consume agrees.
    const h = await head();
    const b = await balance(u);
    const big = await t.client.worker.quote({ userId: u, credits: b.available + 1n });
    expect(big).toEqual({ sufficient: false, available: b.available, allocations: [], policyVersion: 'drawdown-v1' });
    expect(await head()).toBe(h);
    const refused = await settle(t.client.worker.consume({ idempotencyKey: key('c'), userId: u, credits: b.available + 1n }));
    expect(refused.ok).toBe(false);
    expect(await head()).toBe(h);
    // The not-yet-effective lot is quoted once it is effective, as Consume draws it (the lapsed
    // hold swept first, its credits back).
    clock.advance(dayMs);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    const all = await balance(u);
    const q = await t.client.worker.quote({ userId: u, credits: all.available });
    expect(q.sufficient).toBe(true);
    const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: u, credits: all.available });
    expect(c.allocations).toEqual(q.allocations);
    const unknown = await settle(t.client.worker.quote({ userId: 'pq-nobody', credits: 1n }));
    expect(unknown.ok ? 'found' : unknown.error.code).toBe(status.NOT_FOUND);
    await t.expectInvariants();
  });

  it('StreamJournal sends every entry in order, then new ones as they are written, until cancelled', async () => {
    // Enough entries for more than one of the server's pages (100).
    for (let i = 0; i < 110; i += 1) {
      await t.client.admin.grant({ idempotencyKey: key('sg'), userId: `ps${i % 7}`, credits: BigInt(i + 1), bucket: Bucket.BUCKET_BONUS });
    }
    const caughtUp = await head();
    const listed: Entry[] = [];
    let token = '';
    do {
      const page = await t.client.auditor.listEntries({ pageSize: 500, pageToken: token });
      listed.push(...page.entries);
      token = page.nextPageToken;
    } while (token !== '');
    expect(BigInt(listed.length)).toBe(caughtUp);

    const ac = new AbortController();
    const it = t.client.auditor.streamJournal(1n, ac.signal)[Symbol.asyncIterator]();
    const got: Entry[] = [];
    while (BigInt(got.length) < caughtUp) {
      const r = await nextWithin(it, 10_000);
      expect(r.done).toBe(false);
      got.push(r.value as Entry);
    }
    expect(got.map((e) => e.entryId)).toEqual(listed.map((e) => e.entryId));
    expect(got.map((e) => e.entryId)).toEqual(Array.from({ length: got.length }, (_, i) => BigInt(i + 1)));
    expect(got).toEqual(listed);
    for (let i = 1; i < got.length; i += 1) expect(got[i]!.prevHash.equals(got[i - 1]!.hash)).toBe(true);

    // Caught up: the stream waits, and delivers entries written from now on.
    const pending = nextWithin(it, 10_000);
    const g = await t.client.admin.grant({ idempotencyKey: key('sg'), userId: 'ps-new', credits: 3n, bucket: Bucket.BUCKET_BONUS });
    const c = await t.client.worker.consume({ idempotencyKey: key('sc'), userId: 'ps-new', credits: 2n });
    const first = await pending;
    expect(first.done).toBe(false);
    expect((first.value as Entry).entryId).toBe(g.entryId);
    const second = await nextWithin(it, 10_000);
    expect((second.value as Entry).entryId).toBe(c.entryId);
    expect((second.value as Entry).prevHash.equals((first.value as Entry).hash)).toBe(true);
    expect(second.value).toEqual((await t.client.auditor.getEntry({ entryId: c.entryId })).entry);

    // Cancelled: the iteration ends cleanly, without an error.
    ac.abort();
    const end = await nextWithin(it, 5_000);
    expect(end.done).toBe(true);

    // A stream from the middle starts there; breaking out of the loop ends it.
    const from = caughtUp - 2n;
    const ids: bigint[] = [];
    for await (const e of t.client.auditor.streamJournal(from)) {
      ids.push(e.entryId);
      if (ids.length === 4) break;
    }
    expect(ids).toEqual([from, from + 1n, from + 2n, from + 3n]);
    await t.expectInvariants();
  });

  it('the invariant checker walks the hash chain in sequence order (journals of 10 entries and more)', async () => {
    expect(await head()).toBeGreaterThan(10n);
    const report = await t.verify();
    expect(report.violations.filter((v) => v.startsWith('invariant 5'))).toEqual([]);
    await t.expectInvariants();
  });
});
