import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

/**
 * Revenue recognition over the life of paid lots (ledger README §2–§3): every credit that is spent
 * (Consume, or the captured part of a Capture) moves its proportional share of the lot's
 * remaining deferred money to revenue.recognized; reservations, releases and hold timeouts move
 * none. Over a lot's whole life the recognised revenue equals exactly what was paid, to the
 * micro, and the lot's deferred-revenue account ends at zero.
 *
 * Each spending entry is read back with GetEntry and its recognition transfers are compared
 * with an independent computation (a share of what is still deferred, proportional to the
 * credits taken from what is still in the lot, rounded down); at the end the accounts are
 * checked with SQL.
 */

interface PaidLot {
  lotId: bigint;
  deferredAccountId: bigint;
  price: bigint;
  /** Credits still in the lot, and money still deferred, as this test computes them. */
  balance: bigint;
  deferred: bigint;
}

const start = new Date('2026-11-24T12:00:00.000Z');

/** Follows a user's paid lots and checks every entry's recognition against them. */
class RevenueBook {
  readonly lots = new Map<bigint, PaidLot>();
  recognized = 0n;

  constructor(readonly t: TestLedger) {}

  async purchase(userId: string, key: string, credits: bigint, price: bigint, bucket: Bucket): Promise<PaidLot> {
    const r = await this.t.client.payments.purchase({
      idempotencyKey: key,
      userId,
      credits,
      bucket,
      amountMicros: price,
      currency: 'USD',
      externalRef: `cs_${key}`,
    });
    // The lot's own deferred-revenue account is the one the purchase credits with the money.
    const entry = (await this.t.client.auditor.getEntry({ entryId: r.entryId })).entry!;
    const money = entry.transfers.filter((x) => x.unit === 'USD');
    expect(money).toHaveLength(1);
    expect(money[0]!.amount).toBe(price);
    expect(money[0]!.debitAccountCode).toBe('stripe.clearing.USD');
    const lot: PaidLot = { lotId: r.lotId, deferredAccountId: money[0]!.creditAccountId, price, balance: credits, deferred: price };
    this.lots.set(lot.lotId, lot);
    return lot;
  }

  /**
   * Credits spent by entry `entryId` according to its allocation: computes each paid lot's
   * share and compares it with the entry's transfers to revenue.recognized.USD.
   */
  async spent(entryId: bigint, allocation: readonly { lotId: bigint; credits: bigint }[]): Promise<void> {
    const expected = new Map<string, bigint>();
    for (const a of allocation) {
      const lot = this.lots.get(a.lotId);
      if (!lot) continue; // a free lot: nothing to recognise
      expect(a.credits).toBeLessThanOrEqual(lot.balance);
      const share = (lot.deferred * a.credits) / lot.balance;
      lot.deferred -= share;
      lot.balance -= a.credits;
      this.recognized += share;
      if (share > 0n) expected.set(lot.deferredAccountId.toString(), share);
    }
    const entry = (await this.t.client.auditor.getEntry({ entryId })).entry!;
    const got = new Map<string, bigint>();
    for (const x of entry.transfers) {
      if (x.creditAccountCode !== 'revenue.recognized.USD') continue;
      expect(x.unit).toBe('USD');
      const k = x.debitAccountId.toString();
      got.set(k, (got.get(k) ?? 0n) + x.amount);
    }
    expect(got, `recognition of entry ${entryId}`).toEqual(expected);
  }

  /** An entry that must not recognise anything (reserve, release, timeout). */
  async recognizesNothing(entryId: bigint): Promise<void> {
    const entry = (await this.t.client.auditor.getEntry({ entryId })).entry!;
    expect(entry.transfers.filter((x) => x.unit === 'USD')).toEqual([]);
  }

  /** Deferred money left in each lot, from the accounts table. */
  async deferredInDatabase(): Promise<Map<bigint, bigint>> {
    const ids = [...this.lots.values()].map((l) => l.deferredAccountId.toString());
    const { rows } = await this.t.pool.query<{ id: string; left: string; credits_posted: string }>(
      `SELECT id::text, (credits_posted - debits_posted)::text AS left, credits_posted::text
         FROM accounts WHERE id = ANY($1::bigint[]) AND kind = 'DEFERRED'`,
      [ids],
    );
    expect(rows).toHaveLength(ids.length);
    const byAccount = new Map(rows.map((r) => [r.id, r]));
    const result = new Map<bigint, bigint>();
    for (const lot of this.lots.values()) {
      const row = byAccount.get(lot.deferredAccountId.toString())!;
      expect(BigInt(row.credits_posted)).toBe(lot.price);
      result.set(lot.lotId, BigInt(row.left));
    }
    return result;
  }

  /** Sum of every recognition transfer out of this book's lots, over all of the user's entries. */
  async recognizedInJournal(userId: string): Promise<bigint> {
    const accounts = new Set([...this.lots.values()].map((l) => l.deferredAccountId));
    let total = 0n;
    let pageToken = '';
    do {
      const page = await this.t.client.auditor.listEntries({ userId, pageSize: 500, pageToken });
      for (const e of page.entries) {
        for (const x of e.transfers) {
          if (x.creditAccountCode === 'revenue.recognized.USD' && accounts.has(x.debitAccountId)) total += x.amount;
        }
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return total;
  }
}

async function platformCredit(t: TestLedger, code: string): Promise<bigint> {
  const { rows } = await t.pool.query<{ v: string }>(
    'SELECT (credits_posted - debits_posted)::text AS v FROM accounts WHERE code = $1',
    [code],
  );
  return BigInt(rows[0]?.v ?? '0');
}

describe('revenue recognition over the life of a paid lot', () => {
  let t: TestLedger;
  const clock = new ManualClock(start);

  beforeAll(async () => {
    t = await startTestLedger({ clock });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('$299.99 for 500 credits consumed one credit at a time, concurrently, recognises 299 990 000 micros exactly', async () => {
    const book = new RevenueBook(t);
    const lot = await book.purchase('one-by-one', 'p-one', 500n, 299_990_000n, Bucket.BUCKET_PURCHASED);
    const before = await platformCredit(t, 'revenue.recognized.USD');
    // 500 calls in flight at once: the write queue batches them.
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => t.client.worker.consume({ idempotencyKey: `one-${i}`, userId: 'one-by-one', credits: 1n })),
    );
    expect(new Set(results.map((r) => r.entryId)).size).toBe(500);
    // 299 990 000 / 500 = 599 980 exactly: every single credit recognises the same amount.
    const entries = await Promise.all(results.map((r) => t.client.auditor.getEntry({ entryId: r.entryId })));
    for (const { entry } of entries) {
      const recognition = entry!.transfers.filter((x) => x.creditAccountCode === 'revenue.recognized.USD');
      expect(recognition.map((x) => [x.debitAccountId, x.amount])).toEqual([[lot.deferredAccountId, 599_980n]]);
    }
    expect(await book.recognizedInJournal('one-by-one')).toBe(299_990_000n);
    expect((await book.deferredInDatabase()).get(lot.lotId)).toBe(0n);
    expect((await platformCredit(t, 'revenue.recognized.USD')) - before).toBe(299_990_000n);
    const balance = await t.client.auditor.getBalance({ userId: 'one-by-one' });
    expect([balance.balance, balance.held, balance.available, balance.lots.length]).toEqual([0n, 0n, 0n, 0]);
    await expect(t.client.worker.consume({ idempotencyKey: 'one-more', userId: 'one-by-one', credits: 1n })).rejects.toMatchObject({
      details: expect.stringContaining('available'),
    });
    await t.expectInvariants();
  });

  it('odd pieces by Consume and partial Capture, with releases and a timeout, recognise exactly what was paid', async () => {
    const user = 'odd-pieces';
    const book = new RevenueBook(t);
    const before = await platformCredit(t, 'revenue.recognized.USD');
    const upstreamBefore = await platformCredit(t, 'upstream.wavespeed.payable.USD');
    // Drawn in this order: the free SUBSCRIPTION lot (soonest expiry), the lootbox (BONUS), the pack.
    await t.client.admin.grant({
      idempotencyKey: 'odd-free',
      userId: user,
      credits: 3n,
      bucket: Bucket.BUCKET_SUBSCRIPTION,
      expiresAt: new Date(start.getTime() + 30 * 86_400_000),
    });
    // Neither price divides by its credits: every piece rounds, and the last one must absorb it.
    const box = await book.purchase(user, 'odd-box', 41n, 9_990_000n, Bucket.BUCKET_BONUS);
    const pack = await book.purchase(user, 'odd-pack', 507n, 299_990_000n, Bucket.BUCKET_PURCHASED);
    let n = 0;
    const key = (p: string) => `odd-${p}-${(n += 1)}`;

    const consume = async (credits: bigint) => {
      const r = await t.client.worker.consume({
        idempotencyKey: key('c'),
        userId: user,
        credits,
        upstream: { amountMicros: 1_234n, currency: 'USD', requestId: `pred-${n}`, model: 'm' },
      });
      expect(r.allocations.reduce((s, a) => s + a.credits, 0n)).toBe(credits);
      await book.spent(r.entryId, r.allocations);
    };
    const reserve = async (credits: bigint, ttlMs = 0n) => {
      const r = await t.client.worker.reserve({ idempotencyKey: key('r'), userId: user, credits, ttlMs });
      await book.recognizesNothing(r.entryId);
      return r.holdId;
    };
    const capture = async (holdId: string, credits: bigint) => {
      const r = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId, credits });
      expect(r.capturedCredits).toBe(credits);
      expect(r.allocations.reduce((s, a) => s + a.credits, 0n)).toBe(credits);
      await book.spent(r.entryId, r.allocations);
    };

    await consume(2n); // free credits only: nothing recognised
    let h = await reserve(7n); // free 1, box 6
    await capture(h, 5n); // free 1, box 4; the rest goes back
    await consume(13n); // box 13: 24 left
    h = await reserve(29n); // box 24, pack 5
    await capture(h, 27n); // box 24 (emptied: all of its deferred goes), pack 3; 2 go back
    expect(book.lots.get(box.lotId)!.balance).toBe(0n);
    for (let i = 0; i < 3; i += 1) await consume(1n);
    // A hold that times out recognises nothing.
    const lapsed = await reserve(50n, 1_000n);
    clock.advance(2_000);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    const timeouts = await t.client.auditor.listEntries({ userId: user, kind: EntryKind.ENTRY_KIND_HOLD_TIMEOUT });
    expect(timeouts.entries.map((e) => e.holdId)).toEqual([lapsed]);
    await book.recognizesNothing(timeouts.entries[0]!.entryId);
    // A released hold recognises nothing either.
    h = await reserve(100n);
    const released = await t.client.worker.release({ idempotencyKey: key('rel'), holdId: h });
    await book.recognizesNothing(released.entryId);
    for (const piece of [17n, 31n, 7n, 101n, 3n]) await consume(piece);
    h = await reserve(99n);
    await capture(h, 98n);
    h = await reserve(61n);
    await capture(h, 1n);
    // What is left of the pack, spent in two last pieces: the final one takes every micro left.
    const left = book.lots.get(pack.lotId)!.balance;
    expect((await t.client.auditor.getBalance({ userId: user })).available).toBe(left);
    await consume(left - 11n);
    h = await reserve(11n);
    await capture(h, 11n);

    expect(book.lots.get(pack.lotId)!.balance).toBe(0n);
    expect(book.recognized).toBe(9_990_000n + 299_990_000n);
    expect(await book.recognizedInJournal(user)).toBe(9_990_000n + 299_990_000n);
    const deferred = await book.deferredInDatabase();
    expect(deferred.get(box.lotId)).toBe(0n);
    expect(deferred.get(pack.lotId)).toBe(0n);
    expect((await platformCredit(t, 'revenue.recognized.USD')) - before).toBe(9_990_000n + 299_990_000n);
    // Upstream cost is booked apart from revenue: one 1 234-micro bill per Consume.
    const consumes = (await t.client.auditor.listEntries({ userId: user, kind: EntryKind.ENTRY_KIND_CONSUME, pageSize: 500 })).entries.length;
    expect((await platformCredit(t, 'upstream.wavespeed.payable.USD')) - upstreamBefore).toBe(1_234n * BigInt(consumes));
    const balance = await t.client.auditor.getBalance({ userId: user });
    expect([balance.balance, balance.held, balance.available, balance.lots.length]).toEqual([0n, 0n, 0n, 0]);
    await t.expectInvariants();
  });

  it('any price, any lot size, any split into Consume and partial Capture recognises the price exactly (property)', async () => {
    let run = 0;
    const pieceArb = fc.record({
      kind: fc.constantFrom<'consume' | 'capture' | 'release'>('consume', 'capture', 'capture', 'release'),
      // Fraction of what is left, in per-mille, so that pieces stay within the lot.
      permille: fc.integer({ min: 1, max: 700 }),
      capturePermille: fc.integer({ min: 1, max: 1000 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.bigInt(1n, 1_000_000_000_000n),
        fc.bigInt(1n, 2_000n),
        fc.array(pieceArb, { minLength: 1, maxLength: 12 }),
        async (price, credits, pieces) => {
          run += 1;
          const user = `prop-${run}`;
          const book = new RevenueBook(t);
          const lot = await book.purchase(user, `prop-${run}-p`, credits, price, Bucket.BUCKET_PURCHASED);
          let n = 0;
          const key = () => `prop-${run}-${(n += 1)}`;
          // The pieces, then whatever is left in one last Consume.
          for (const p of [...pieces, null]) {
            const left = book.lots.get(lot.lotId)!.balance;
            if (left === 0n) break;
            if (p === null) {
              const r = await t.client.worker.consume({ idempotencyKey: key(), userId: user, credits: left });
              await book.spent(r.entryId, r.allocations);
              break;
            }
            const size = (left * BigInt(p.permille)) / 1000n || 1n;
            if (p.kind === 'consume') {
              const r = await t.client.worker.consume({ idempotencyKey: key(), userId: user, credits: size });
              await book.spent(r.entryId, r.allocations);
              continue;
            }
            const hold = await t.client.worker.reserve({ idempotencyKey: key(), userId: user, credits: size });
            if (p.kind === 'release') {
              const r = await t.client.worker.release({ idempotencyKey: key(), holdId: hold.holdId });
              await book.recognizesNothing(r.entryId);
              continue;
            }
            const captured = (size * BigInt(p.capturePermille)) / 1000n || 1n;
            const r = await t.client.worker.capture({ idempotencyKey: key(), holdId: hold.holdId, credits: captured });
            await book.spent(r.entryId, r.allocations);
          }
          expect(book.lots.get(lot.lotId)!.balance).toBe(0n);
          expect(book.recognized).toBe(price);
          expect(await book.recognizedInJournal(user)).toBe(price);
          expect((await book.deferredInDatabase()).get(lot.lotId)).toBe(0n);
        },
      ),
      { numRuns: 15 },
    );
    await t.expectInvariants();
  });
});
