import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Bucket,
  EntryKind,
  TransferKind,
  type Entry,
  type GetBalanceResponse,
} from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { settle, type Outcome, refusal } from './testing/call-outcome.js';

// The subscription lifecycle across month boundaries (ledger README §3 RenewSubscription, Expire,
// "Holds and expiry"), through the real gRPC client, with a ManualClock that only this file
// moves. Each rule is looked at 1 ms before, at, and 1 ms after its boundary.

const hourMs = 3_600_000;
const dayMs = 86_400_000;


interface Period {
  start: Date;
  end: Date;
}

/** The month of `year`/`month0` (0-based) in UTC: [1st 00:00, 1st of next month 00:00). */
function month(year: number, month0: number): Period {
  return { start: new Date(Date.UTC(year, month0, 1)), end: new Date(Date.UTC(year, month0 + 1, 1)) };
}

function bucketView(b: GetBalanceResponse) {
  const row = (bucket: Bucket) => {
    const x = b.buckets.find((y) => y.bucket === bucket)!;
    return { balance: x.balance, held: x.held, available: x.available };
  };
  return {
    subscription: row(Bucket.BUCKET_SUBSCRIPTION),
    bonus: row(Bucket.BUCKET_BONUS),
    purchased: row(Bucket.BUCKET_PURCHASED),
    total: { balance: b.balance, held: b.held, available: b.available },
  };
}

function legs(entry: Entry | undefined) {
  return (entry?.transfers ?? []).map((x) => ({
    kind: x.kind,
    from: x.debitAccountCode,
    to: x.creditAccountCode,
    amount: x.amount,
    unit: x.unit,
  }));
}

describe('subscription lifecycle', () => {
  let t: TestLedger | undefined;
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;

  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  async function start(clock: ManualClock, options: Parameters<typeof startTestLedger>[0] = {}): Promise<TestLedger> {
    t = await startTestLedger({ clock, ...options });
    return t;
  }

  const api = () => t!.client;
  const renew = (userId: string, p: Period, credits: bigint, amountMicros = 0n, externalRef = '', idempotencyKey = key('renew')) =>
    api().payments.renewSubscription({
      idempotencyKey,
      userId,
      plan: 'pro',
      periodStart: p.start,
      periodEnd: p.end,
      credits,
      amountMicros,
      currency: amountMicros > 0n ? 'USD' : '',
      externalRef,
    });
  const consume = (userId: string, credits: bigint) => api().worker.consume({ idempotencyKey: key('consume'), userId, credits });
  const balance = async (userId: string) => bucketView(await api().auditor.getBalance({ userId }));
  const entry = async (entryId: bigint) => (await api().auditor.getEntry({ entryId })).entry!;
  const head = async () => BigInt((await t!.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);
  const lotRow = async (lotId: bigint) =>
    (
      await t!.pool.query<{ expiry_swept: boolean; balance: string; held: string; deferred: string | null }>(
        `SELECT l.expiry_swept, (a.credits_posted - a.debits_posted)::text AS balance, a.debits_pending::text AS held,
                (d.credits_posted - d.debits_posted)::text AS deferred
           FROM lots l JOIN accounts a ON a.id = l.account_id LEFT JOIN accounts d ON d.id = l.deferred_account_id
          WHERE l.account_id = $1`,
        [lotId.toString()],
      )
    ).rows[0]!;
  /** Where a lot's deferred revenue went, by destination account code. */
  const deferredOutflows = async (lotId: bigint) => {
    const { rows } = await t!.pool.query<{ code: string; amount: string }>(
      `SELECT c.code, SUM(t.amount)::text AS amount
         FROM lots l JOIN transfers t ON t.debit_account_id = l.deferred_account_id
         JOIN accounts c ON c.id = t.credit_account_id
        WHERE l.account_id = $1 GROUP BY c.code`,
      [lotId.toString()],
    );
    return Object.fromEntries(rows.map((r) => [r.code, BigInt(r.amount)]));
  };

  it('renewal at 23:59:59.999, at 00:00 and at 00:00:00.001 of the period boundary', async () => {
    const clock = new ManualClock('2026-10-01T00:00:00.000Z');
    await start(clock);
    const oct = month(2026, 9);
    const nov = month(2026, 10);
    expect(oct.end).toEqual(nov.start);
    const users = ['early', 'at', 'late', 'swept'] as const;
    const octLot = {} as Record<(typeof users)[number], bigint>;
    for (const u of users) {
      const r = await renew(u, oct, 100n, 9_990_000n, `in_${u}_oct`);
      expect(r.expiredCredits).toBe(0n);
      octLot[u] = r.lotId;
      await consume(u, 30n);
    }

    // 1 ms before the period ends: the October lot is still spendable by everyone.
    clock.set(new Date(nov.start.getTime() - 1));
    for (const u of users) expect((await balance(u)).subscription).toEqual({ balance: 70n, held: 0n, available: 70n });
    const c = await consume('early', 1n);
    expect(c.allocations).toEqual([{ lotId: octLot.early, credits: 1n }]);
    const octDeferred = (await api().auditor.getBalance({ userId: 'early' })).lots[0]!.deferredMicros;
    expect(octDeferred).toBe(9_990_000n - 2_997_000n - 99_900n); // 30 then 1 credits recognised pro rata

    // An early renewal (the invoice paid 1 ms before period_start) grants the new period's lot,
    // spendable from period_start, and leaves the October lot alone: the user keeps spending
    // it until it really ends, and the expiry sweeper journals its remainder after that.
    const early = await renew('early', nov, 120n, 11_990_000n, 'in_early_nov');
    expect(early.expiredCredits).toBe(0n);
    expect((await balance('early')).subscription).toEqual({ balance: 189n, held: 0n, available: 69n });
    expect((await consume('early', 1n)).allocations).toEqual([{ lotId: octLot.early, credits: 1n }]);
    const q = await api().worker.quote({ userId: 'early', credits: 68n });
    expect(q.sufficient).toBe(true);
    expect(q.allocations).toEqual([{ lotId: octLot.early, credits: 68n }]);
    const earlyEntry = await entry(early.entryId);
    expect(earlyEntry.kind).toBe(EntryKind.ENTRY_KIND_RENEW_SUBSCRIPTION);
    expect(earlyEntry.recordedAt).toEqual(clock.now());
    expect(earlyEntry.effectiveAt).toEqual(nov.start);
    expect(earlyEntry.metadata).toMatchObject({ plan: 'pro', period_start: nov.start.toISOString(), period_end: nov.end.toISOString() });
    expect(legs(earlyEntry)).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: 'platform.credits_issued', to: `user:early:lot:${early.lotId}`, amount: 120n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: 'stripe.clearing.USD', to: `user:early:lot:${early.lotId}:deferred`, amount: 11_990_000n, unit: 'USD' },
    ]);
    // Users not renewed yet keep their October credits during that millisecond.
    expect((await balance('at')).subscription.available).toBe(70n);

    // At 00:00: the early renewal's lot becomes spendable; October lots are past expiry (not
    // drawable) but still counted in balance until a renewal or the sweeper journals it.
    clock.set(nov.start);
    expect((await balance('early')).subscription).toEqual({ balance: 188n, held: 0n, available: 120n });
    expect((await balance('at')).subscription).toEqual({ balance: 70n, held: 0n, available: 0n });
    expect(refusal(await settle(consume('at', 1n)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'INSUFFICIENT_CREDITS' });
    const at = await renew('at', nov, 120n, 11_990_000n, 'in_at_nov');
    expect(at.expiredCredits).toBe(70n);
    expect((await balance('at')).subscription).toEqual({ balance: 120n, held: 0n, available: 120n });
    expect((await consume('at', 1n)).allocations).toEqual([{ lotId: at.lotId, credits: 1n }]);

    // 1 ms after: a late renewal expires the unswept remainder itself; where the sweeper came
    // first, the renewal has nothing left to expire and the EXPIRE entry carries it.
    clock.set(new Date(nov.start.getTime() + 1));
    const late = await renew('late', nov, 120n, 11_990_000n, 'in_late_nov');
    expect(late.expiredCredits).toBe(70n);
    const sweep = await t!.ledger.expirySweeper.sweepOnce();
    expect(sweep).toEqual({ examined: 2, expired: 2, finished: 0 });
    expect((await balance('early')).subscription).toEqual({ balance: 120n, held: 0n, available: 120n });
    expect((await balance('swept')).subscription).toEqual({ balance: 0n, held: 0n, available: 0n });
    const swept = await renew('swept', nov, 120n, 11_990_000n, 'in_swept_nov');
    expect(swept.expiredCredits).toBe(0n);
    expect(legs(await entry(swept.entryId)).map((l) => l.to)).toEqual([`user:swept:lot:${swept.lotId}`, `user:swept:lot:${swept.lotId}:deferred`]);
    const expireEntries = await t!.pool.query<{ user_id: string; effective_at: Date }>(
      `SELECT user_id, effective_at FROM entries WHERE kind = 'EXPIRE' ORDER BY user_id`,
    );
    expect(expireEntries.rows).toEqual([
      { user_id: 'early', effective_at: oct.end },
      { user_id: 'swept', effective_at: oct.end },
    ]);

    // Every October lot is finished, emptied, and its money split exactly between recognised
    // revenue and breakage.
    for (const u of users) {
      expect(await lotRow(octLot[u])).toEqual({ expiry_swept: true, balance: '0', held: '0', deferred: '0' });
      const out = await deferredOutflows(octLot[u]);
      expect((out['revenue.recognized.USD'] ?? 0n) + (out['revenue.breakage.USD'] ?? 0n)).toBe(9_990_000n);
      expect(out['refunds.USD']).toBeUndefined();
    }
    const expired = await t!.pool.query<{ total: string }>(
      `SELECT SUM(amount)::text AS total FROM transfers t JOIN accounts a ON a.id = t.credit_account_id WHERE a.code = 'platform.credits_expired'`,
    );
    expect(BigInt(expired.rows[0]!.total)).toBe(68n + 70n + 70n + 70n);
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 0, expired: 0, finished: 0 });
    await t!.expectInvariants();
  });

  it('a lot is spendable 1 ms before expires_at, not at it; the sweeper expires it at expires_at, not before', async () => {
    const clock = new ManualClock('2026-11-24T12:00:00.000Z');
    await start(clock);
    const T = new Date('2026-11-30T00:00:00.000Z');
    const box = await api().payments.purchase({
      idempotencyKey: key('p'), userId: 'u', credits: 10n, bucket: Bucket.BUCKET_BONUS,
      amountMicros: 1_000_000n, currency: 'USD', externalRef: 'cs_box', expiresAt: T,
    });
    const pack = await api().payments.purchase({
      idempotencyKey: key('p'), userId: 'u', credits: 5n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 500_000n, currency: 'USD', externalRef: 'cs_pack',
    });

    clock.set(new Date(T.getTime() - 1));
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 0, expired: 0, finished: 0 });
    expect((await api().worker.quote({ userId: 'u', credits: 12n })).allocations).toEqual([
      { lotId: box.lotId, credits: 10n },
      { lotId: pack.lotId, credits: 2n },
    ]);
    expect((await consume('u', 4n)).allocations).toEqual([{ lotId: box.lotId, credits: 4n }]);

    clock.set(T);
    expect((await balance('u')).bonus).toEqual({ balance: 6n, held: 0n, available: 0n });
    expect((await consume('u', 1n)).allocations).toEqual([{ lotId: pack.lotId, credits: 1n }]);
    const sweep = await t!.ledger.expirySweeper.sweepOnce();
    expect(sweep).toEqual({ examined: 1, expired: 1, finished: 0 });
    const { rows } = await t!.pool.query<{ seq: string }>(`SELECT seq::text FROM entries WHERE kind = 'EXPIRE'`);
    expect(rows).toHaveLength(1);
    const ex = await entry(BigInt(rows[0]!.seq));
    expect(ex.effectiveAt).toEqual(T);
    expect(ex.recordedAt).toEqual(T);
    expect(ex.userId).toBe('u');
    expect(legs(ex)).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:u:lot:${box.lotId}`, to: 'platform.credits_expired', amount: 6n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:u:lot:${box.lotId}:deferred`, to: 'revenue.breakage.USD', amount: 600_000n, unit: 'USD' },
    ]);
    expect((await balance('u')).bonus).toEqual({ balance: 0n, held: 0n, available: 0n });
    expect((await balance('u')).purchased).toEqual({ balance: 4n, held: 0n, available: 4n });

    clock.set(new Date(T.getTime() + 1));
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 0, expired: 0, finished: 0 });
    expect(await deferredOutflows(box.lotId)).toEqual({ 'revenue.recognized.USD': 400_000n, 'revenue.breakage.USD': 600_000n });
    await t!.expectInvariants();
  });

  it('subscription + bonus + purchased across a reset: expiring credits are spent first, only the subscription remainder is lost', async () => {
    const clock = new ManualClock('2026-11-01T00:00:00.000Z');
    await start(clock);
    const nov = month(2026, 10);
    const dec = month(2026, 11);
    const u = 'mix';
    const sub = await renew(u, nov, 100n, 9_990_000n, 'in_mix_nov');
    const boxDec15 = await api().admin.grant({
      idempotencyKey: key('g'), userId: u, credits: 50n, bucket: Bucket.BUCKET_BONUS, expiresAt: new Date('2026-12-15T00:00:00Z'),
    });
    const promo = await api().admin.grant({ idempotencyKey: key('g'), userId: u, credits: 40n, bucket: Bucket.BUCKET_BONUS });
    const pack = await api().payments.purchase({
      idempotencyKey: key('p'), userId: u, credits: 200n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 29_990_000n, currency: 'USD', externalRef: 'cs_mix',
    });

    clock.set('2026-11-10T08:00:00.000Z');
    expect((await consume(u, 60n)).allocations).toEqual([{ lotId: sub.lotId, credits: 60n }]);
    clock.set(new Date(nov.end.getTime() - 1));
    expect(await balance(u)).toEqual({
      subscription: { balance: 40n, held: 0n, available: 40n },
      bonus: { balance: 90n, held: 0n, available: 90n },
      purchased: { balance: 200n, held: 0n, available: 200n },
      total: { balance: 330n, held: 0n, available: 330n },
    });
    const before = await api().auditor.getBalance({ userId: u });

    clock.set(dec.start);
    const r = await renew(u, dec, 100n, 9_990_000n, 'in_mix_dec');
    expect(r.expiredCredits).toBe(40n);
    const after = await api().auditor.getBalance({ userId: u });
    expect(bucketView(after)).toEqual({
      subscription: { balance: 100n, held: 0n, available: 100n },
      bonus: { balance: 90n, held: 0n, available: 90n },
      purchased: { balance: 200n, held: 0n, available: 200n },
      total: { balance: 390n, held: 0n, available: 390n },
    });
    // Bonus and purchased lots are exactly as they were, money included.
    const untouched = (b: GetBalanceResponse) => b.lots.filter((l) => l.bucket !== Bucket.BUCKET_SUBSCRIPTION);
    expect(untouched(after)).toEqual(untouched(before));
    expect(legs(await entry(r.entryId)).filter((l) => l.from.startsWith(`user:${u}:`)).map((l) => l.from)).toEqual([
      `user:${u}:lot:${sub.lotId}`,
      `user:${u}:lot:${sub.lotId}:deferred`,
    ]);

    // Spending after the reset follows the drawdown order: soonest expiry first (the Dec 15
    // lootbox before the subscription lot that lasts until Jan 1), never-expiring bonus before
    // purchased.
    clock.set('2026-12-02T10:00:00.000Z');
    expect((await consume(u, 130n)).allocations).toEqual([
      { lotId: boxDec15.lotId, credits: 50n },
      { lotId: r.lotId, credits: 80n },
    ]);
    expect((await consume(u, 100n)).allocations).toEqual([
      { lotId: r.lotId, credits: 20n },
      { lotId: promo.lotId, credits: 40n },
      { lotId: pack.lotId, credits: 40n },
    ]);
    const lost = await t!.pool.query<{ total: string }>(
      `SELECT COALESCE(SUM(t.amount), 0)::text AS total FROM transfers t JOIN accounts a ON a.id = t.credit_account_id
        JOIN entries e ON e.seq = t.entry_seq WHERE a.code = 'platform.credits_expired' AND e.user_id = $1`,
      [u],
    );
    expect(BigInt(lost.rows[0]!.total)).toBe(40n);
    expect(bucketView(await api().auditor.getBalance({ userId: u })).total).toEqual({ balance: 160n, held: 0n, available: 160n });
    await t!.expectInvariants();
  });

  it('February (28 and 29 days) and 31-day months: each lot lasts to the last millisecond of its month', async () => {
    const first = month(2026, 11);
    const clock = new ManualClock(first.start);
    await start(clock);
    const u = 'cal';
    const months: Period[] = [];
    for (let i = 0; i < 16; i += 1) months.push(month(2026, 11 + i)); // Dec 2026 … Mar 2028
    const lengths = months.map((p) => Math.round((p.end.getTime() - p.start.getTime()) / dayMs));
    // The calendar these periods follow (a sanity check of the test's own month arithmetic).
    expect(lengths).toEqual([31, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 29, 31]);

    let remainder = 0n;
    const lots: bigint[] = [];
    for (const [i, p] of months.entries()) {
      clock.set(p.start);
      // Before the renewal, at the boundary, last month's lot is past expiry: not spendable.
      if (i > 0) expect((await balance(u)).subscription).toEqual({ balance: remainder, held: 0n, available: 0n });
      const r = await renew(u, p, 100n, 9_990_000n, `in_cal_${i}`);
      expect(r.expiredCredits).toBe(remainder);
      lots.push(r.lotId);
      const lot = (await api().auditor.getBalance({ userId: u })).lots.find((l) => l.lotId === r.lotId)!;
      expect({ effectiveAt: lot.effectiveAt, expiresAt: lot.expiresAt }).toEqual({ effectiveAt: p.start, expiresAt: p.end });

      clock.set(new Date(p.start.getTime() + dayMs));
      await consume(u, BigInt(i + 1));
      if (p.start.getTime() === Date.UTC(2028, 1, 1)) {
        clock.set('2028-02-29T12:00:00.000Z'); // the leap day exists and is inside the period
        expect((await balance(u)).subscription.available).toBe(100n - BigInt(i + 1));
      }
      // The last millisecond of the month still spends this month's credits.
      clock.set(new Date(p.end.getTime() - 1));
      expect((await balance(u)).subscription.available).toBe(100n - BigInt(i + 1));
      expect((await consume(u, 1n)).allocations).toEqual([{ lotId: r.lotId, credits: 1n }]);
      remainder = 100n - BigInt(i + 2);
    }
    clock.set(months[months.length - 1]!.end);
    expect((await balance(u)).subscription).toEqual({ balance: remainder, held: 0n, available: 0n });
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 1, expired: 1, finished: 0 });
    expect((await balance(u)).subscription.balance).toBe(0n);
    for (const lotId of lots) {
      const out = await deferredOutflows(lotId);
      expect((out['revenue.recognized.USD'] ?? 0n) + (out['revenue.breakage.USD'] ?? 0n)).toBe(9_990_000n);
    }
    await t!.expectInvariants();
  });

  it('the expiry sweeper catches up after downtime in bounded passes, oldest expiry first', async () => {
    const clock = new ManualClock('2026-11-24T12:00:00.000Z');
    const batchMax = 4;
    await start(clock, { options: { expirySweepBatchMax: batchMax } });
    const t0 = clock.now().getTime();
    const users = ['d0', 'd1', 'd2', 'd3', 'd4'];
    const lotIds: bigint[] = [];
    const expiresOf = new Map<bigint, number>();
    for (const [i, u] of users.entries()) {
      for (let j = 0; j < 4; j += 1) {
        const expiresAt = new Date(t0 + (j * users.length + i + 1) * hourMs); // interleaved across users
        const g = await api().admin.grant({ idempotencyKey: key('g'), userId: u, credits: 10n, bucket: Bucket.BUCKET_BONUS, expiresAt });
        lotIds.push(g.lotId);
        expiresOf.set(g.lotId, expiresAt.getTime());
      }
      await api().admin.grant({ idempotencyKey: key('g'), userId: u, credits: 7n, bucket: Bucket.BUCKET_PURCHASED });
      await api().admin.grant({
        idempotencyKey: key('g'), userId: u, credits: 3n, bucket: Bucket.BUCKET_BONUS, expiresAt: new Date(t0 + 400 * dayMs),
      });
    }
    await consume('d0', 40n); // all four of d0's expiring lots, nothing left to expire
    await consume('d1', 15n); // d1: first lot empty, second half spent
    const hold = await api().worker.reserve({ idempotencyKey: key('r'), userId: 'd2', credits: 10n, ttlMs: 3_600_000n }); // d2's first lot, all held
    expect(hold.allocations).toHaveLength(1);

    // Ninety days of downtime: every one of the 20 lots is long expired.
    clock.set(new Date(t0 + 90 * dayMs));
    const headBefore = await head();
    const passes: { examined: number; expired: number; finished: number }[] = [];
    for (let i = 0; i < 20; i += 1) {
      const pass = await t!.ledger.expirySweeper.sweepOnce();
      passes.push(pass);
      if (pass.examined === 0) break;
    }
    expect(passes.map((p) => p.examined)).toEqual([4, 4, 4, 4, 4, 0]);
    expect(passes.reduce((s, p) => s + p.expired, 0)).toBe(20 - 4 - 1 - 1);
    expect(passes.reduce((s, p) => s + p.finished, 0)).toBe(4 + 1 + 1);
    expect(await head()).toBe(headBefore + 14n);

    // One EXPIRE entry per lot that had an unheld remainder, in order of expiry, effective at
    // the lot's own expires_at, written by the ledger itself.
    const { rows } = await t!.pool.query<{ metadata: { lot_id: string }; effective_at: Date; actor: string; idempotency_key: string }>(
      `SELECT metadata, effective_at, actor, idempotency_key FROM entries WHERE kind = 'EXPIRE' ORDER BY seq`,
    );
    expect(rows).toHaveLength(14);
    const expiredLots = rows.map((r) => BigInt(r.metadata.lot_id));
    expect(new Set(expiredLots).size).toBe(14);
    const times = expiredLots.map((id) => expiresOf.get(id)!);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    for (const [i, r] of rows.entries()) {
      expect(r.effective_at.getTime()).toBe(times[i]);
      expect(r.actor).toBe('ledger.sweeper');
      expect(r.idempotency_key).toMatch(new RegExp(`^ledger:expire-lot:${expiredLots[i]}:v\\d+$`));
    }
    const swept = await t!.pool.query<{ n: number }>(
      `SELECT COUNT(*)::int AS n FROM lots WHERE expiry_swept AND account_id = ANY($1::bigint[])`,
      [lotIds.map(String)],
    );
    expect(swept.rows[0]!.n).toBe(20);
    const untouched = await t!.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM lots WHERE expiry_swept AND NOT (account_id = ANY($1::bigint[]))`, [
      lotIds.map(String),
    ]);
    expect(untouched.rows[0]!.n).toBe(0);

    // Only the never-expiring and the far-future lots are left, plus d2's held credits, which
    // the hold's timeout then expires in its own entry.
    for (const u of ['d0', 'd1', 'd3', 'd4']) expect((await balance(u)).total).toEqual({ balance: 10n, held: 0n, available: 10n });
    expect((await balance('d2')).total).toEqual({ balance: 20n, held: 10n, available: 10n });
    expect(await t!.ledger.sweeper.sweepOnce()).toBe(1);
    expect((await balance('d2')).total).toEqual({ balance: 10n, held: 0n, available: 10n });
    const timeout = await t!.pool.query<{ seq: string }>(`SELECT seq::text FROM entries WHERE kind = 'HOLD_TIMEOUT'`);
    expect(legs(await entry(BigInt(timeout.rows[0]!.seq))).map((l) => [l.kind, l.to, l.amount])).toEqual([
      [TransferKind.TRANSFER_KIND_VOID_PENDING, 'platform.credits_consumed', 10n],
      [TransferKind.TRANSFER_KIND_POSTED, 'platform.credits_expired', 10n],
    ]);
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 0, expired: 0, finished: 0 });
    await t!.expectInvariants();
  });

  it('a second renewal of the same (user, period) is ALREADY_EXISTS under any key, and writes nothing', async () => {
    const clock = new ManualClock('2026-11-01T00:00:00.000Z');
    await start(clock);
    const nov = month(2026, 10);
    const dec = month(2026, 11);
    const first = await renew('s', nov, 100n, 9_990_000n, 'in_s_nov', 'renew-s-nov');
    await consume('s', 10n);
    const balanceBefore = await api().auditor.getBalance({ userId: 's' });
    const headBefore = await head();

    // Same key, same request: the stored result.
    const replay = await renew('s', nov, 100n, 9_990_000n, 'in_s_nov', 'renew-s-nov');
    expect(replay).toEqual({ ...first, replayed: true });
    // Another key for the same period (a redelivered invoice under a new event id, a second
    // invoice for the period, a free-plan grant): refused.
    for (const attempt of [
      () => renew('s', nov, 100n, 9_990_000n, 'in_s_nov_again'),
      () => renew('s', nov, 100n, 9_990_000n, 'in_s_nov'),
      () => renew('s', nov, 500n),
      () => renew('s', { start: nov.start, end: new Date(nov.end.getTime() + dayMs) }, 100n),
    ]) {
      const o = await settle(attempt());
      expect(o.ok).toBe(false);
      if (!o.ok) expect(o.error.code).toBe(status.ALREADY_EXISTS);
    }
    // The same key with a different request is ALREADY_EXISTS too (idempotency).
    expect(refusal(await settle(renew('s', nov, 101n, 9_990_000n, 'in_s_nov', 'renew-s-nov'))).code).toBe(status.ALREADY_EXISTS);
    // The invoice id is unique too: next period under an invoice already recorded is refused.
    expect(refusal(await settle(renew('s', dec, 100n, 9_990_000n, 'in_s_nov'))).code).toBe(status.ALREADY_EXISTS);
    expect(await head()).toBe(headBefore);
    expect(await api().auditor.getBalance({ userId: 's' })).toEqual(balanceBefore);

    // Two renewals for one period racing under different keys: exactly one is written.
    clock.set(dec.start);
    const race = await Promise.all([renew('s', dec, 100n, 9_990_000n, 'in_s_dec_a'), renew('s', dec, 100n, 9_990_000n, 'in_s_dec_b')].map(settle));
    expect(race.filter((o) => o.ok)).toHaveLength(1);
    expect(race.filter((o) => !o.ok).map((o) => refusal(o).code)).toEqual([status.ALREADY_EXISTS]);
    expect(await head()).toBe(headBefore + 1n);
    expect((await balance('s')).subscription).toEqual({ balance: 100n, held: 0n, available: 100n });
    const { rows } = await t!.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM lots WHERE user_id = 's' AND period_start = $1`, [dec.start]);
    expect(rows[0]!.n).toBe(1);
    await t!.expectInvariants();
  });

  it('held credits of an expiring lot stay capturable; what a release, a capture or a timeout gives back after expiry is expired in that same entry', async () => {
    const clock = new ManualClock('2026-11-01T00:00:00.000Z');
    await start(clock);
    const nov = month(2026, 10);
    const dec = month(2026, 11);
    const sub = await renew('h', nov, 100n, 10_000_000n, 'in_h_nov');
    const other = await renew('rh', nov, 100n, 10_000_000n, 'in_rh_nov');

    clock.set('2026-11-30T23:30:00.000Z');
    const a = await api().worker.reserve({ idempotencyKey: key('r'), userId: 'h', credits: 30n, ttlMs: 3_600_000n });
    const b = await api().worker.reserve({ idempotencyKey: key('r'), userId: 'h', credits: 20n, ttlMs: 3_600_000n });
    const c = await api().worker.reserve({ idempotencyKey: key('r'), userId: 'h', credits: 10n, ttlMs: 3_600_000n });
    expect([a, b, c].map((r) => r.allocations)).toEqual([30n, 20n, 10n].map((credits) => [{ lotId: sub.lotId, credits }]));
    const rh = await api().worker.reserve({ idempotencyKey: key('r'), userId: 'rh', credits: 25n, ttlMs: 3_600_000n });

    // 1 ms before expiry the sweeper leaves the lot alone; at expiry it takes only the unheld 40.
    clock.set(new Date(dec.start.getTime() - 1));
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 0, expired: 0, finished: 0 });
    clock.set(dec.start);
    // The renewal across the reset expires only the unheld remainder, never held credits.
    const rr = await renew('rh', dec, 100n, 10_000_000n, 'in_rh_dec');
    expect(rr.expiredCredits).toBe(75n);
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 2, expired: 1, finished: 1 });
    expect((await balance('h')).subscription).toEqual({ balance: 60n, held: 60n, available: 0n });
    expect(await lotRow(sub.lotId)).toMatchObject({ balance: '60', held: '60', deferred: '6000000' });

    // Capture after the lot's expiry, within the hold's TTL: allowed; the 5 it releases are
    // expired in the capture's own entry.
    clock.set('2026-12-01T00:10:00.000Z');
    const cap = await api().worker.capture({ idempotencyKey: key('cap'), holdId: a.holdId, credits: 25n });
    expect(cap).toMatchObject({ capturedCredits: 25n, releasedCredits: 5n, allocations: [{ lotId: sub.lotId, credits: 25n }] });
    const lot = `user:h:lot:${sub.lotId}`;
    expect(legs(await entry(cap.entryId))).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POST_PENDING, from: lot, to: 'platform.credits_consumed', amount: 25n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_VOID_PENDING, from: lot, to: 'platform.credits_consumed', amount: 5n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `${lot}:deferred`, to: 'revenue.recognized.USD', amount: 2_500_000n, unit: 'USD' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: lot, to: 'platform.credits_expired', amount: 5n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `${lot}:deferred`, to: 'revenue.breakage.USD', amount: 500_000n, unit: 'USD' },
    ]);

    // Release after expiry: void and expiry in one RELEASE entry; no EXPIRE entry is added.
    clock.set('2026-12-01T00:15:00.000Z');
    const rel = await api().worker.release({ idempotencyKey: key('rel'), holdId: b.holdId });
    expect(rel.releasedCredits).toBe(20n);
    const relEntry = await entry(rel.entryId);
    expect(relEntry.kind).toBe(EntryKind.ENTRY_KIND_RELEASE);
    expect(legs(relEntry)).toEqual([
      { kind: TransferKind.TRANSFER_KIND_VOID_PENDING, from: lot, to: 'platform.credits_consumed', amount: 20n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: lot, to: 'platform.credits_expired', amount: 20n, unit: 'CREDIT' },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `${lot}:deferred`, to: 'revenue.breakage.USD', amount: 2_000_000n, unit: 'USD' },
    ]);
    expect((await balance('h')).subscription).toEqual({ balance: 10n, held: 10n, available: 0n });

    // The last hold lapses: its timeout expires the credits it gives back.
    clock.set('2026-12-01T00:30:00.000Z');
    expect(await t!.ledger.sweeper.sweepOnce()).toBe(2); // c, and rh's hold on the old lot
    expect((await balance('h')).subscription).toEqual({ balance: 0n, held: 0n, available: 0n });
    expect((await balance('rh')).subscription).toEqual({ balance: 100n, held: 0n, available: 100n });
    const kinds = await t!.pool.query<{ kind: string; n: number }>(
      `SELECT kind, COUNT(*)::int AS n FROM entries WHERE user_id = 'h' GROUP BY kind ORDER BY kind`,
    );
    expect(kinds.rows).toEqual([
      { kind: 'CAPTURE', n: 1 },
      { kind: 'EXPIRE', n: 1 },
      { kind: 'HOLD_TIMEOUT', n: 1 },
      { kind: 'RELEASE', n: 1 },
      { kind: 'RENEW_SUBSCRIPTION', n: 1 },
      { kind: 'RESERVE', n: 3 },
    ]);
    expect(await lotRow(sub.lotId)).toMatchObject({ balance: '0', held: '0', deferred: '0' });
    expect(await lotRow(other.lotId)).toMatchObject({ balance: '0', held: '0', deferred: '0' });
    expect(await deferredOutflows(sub.lotId)).toEqual({ 'revenue.recognized.USD': 2_500_000n, 'revenue.breakage.USD': 7_500_000n });
    expect(await deferredOutflows(other.lotId)).toEqual({ 'revenue.breakage.USD': 10_000_000n });
    expect(await t!.ledger.expirySweeper.sweepOnce()).toEqual({ examined: 0, expired: 0, finished: 0 });
    await t!.expectInvariants();
  });
});
