import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind, RefundReason, TransferKind, type Entry } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { settle, type Outcome, refusal } from './testing/call-outcome.js';

// Refund and dispute (ledger README §3): the unconsumed credits of a purchase are clawed back in
// proportion to the money refunded, cumulatively, never below zero (the shortfall is recorded);
// the money leaves the lot's deferred revenue (and recognised revenue for what was already
// used). Over a lot's life, recognised + breakage + refunded = paid, to the micro.

function legs(entry: Entry | undefined) {
  return (entry?.transfers ?? []).map((x) => ({ kind: x.kind, from: x.debitAccountCode, to: x.creditAccountCode, amount: x.amount }));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('refunds', () => {
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  let t: TestLedger;
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;

  beforeAll(async () => {
    t = await startTestLedger({ clock });
  });
  afterAll(async () => {
    await t?.close();
  });

  const purchase = (userId: string, credits: bigint, amountMicros: bigint, externalRef: string, extra: { expiresAt?: Date; bucket?: Bucket } = {}) =>
    t.client.payments.purchase({
      idempotencyKey: key('buy'),
      userId,
      credits,
      bucket: extra.bucket ?? Bucket.BUCKET_PURCHASED,
      amountMicros,
      currency: 'USD',
      externalRef,
      ...(extra.expiresAt ? { expiresAt: extra.expiresAt } : {}),
    });
  const refund = (externalRef: string, amountMicros: bigint, reason = RefundReason.REFUND_REASON_REFUND, idempotencyKey = key('refund')) =>
    t.client.payments.refund({ idempotencyKey, externalRef, amountMicros, reason });
  const consume = (userId: string, credits: bigint) => t.client.worker.consume({ idempotencyKey: key('use'), userId, credits });
  const entry = async (entryId: bigint) => (await t.client.auditor.getEntry({ entryId })).entry!;
  const head = async () => BigInt((await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);
  const lotState = async (lotId: bigint) => {
    const { rows } = await t.pool.query<{ balance: string; held: string; deferred: string; refunded: string }>(
      `SELECT (a.credits_posted - a.debits_posted)::text AS balance, a.debits_pending::text AS held,
              (d.credits_posted - d.debits_posted)::text AS deferred, l.refunded_micros::text AS refunded
         FROM lots l JOIN accounts a ON a.id = l.account_id JOIN accounts d ON d.id = l.deferred_account_id
        WHERE l.account_id = $1`,
      [lotId.toString()],
    );
    const r = rows[0]!;
    return { balance: BigInt(r.balance), held: BigInt(r.held), deferred: BigInt(r.deferred), refunded: BigInt(r.refunded) };
  };
  /**
   * A lot's money over its life: where its deferred revenue went (by destination code), and
   * what its refunds took out of revenue already recognised.
   */
  const lotMoney = async (lotId: bigint) => {
    const out = await t.pool.query<{ code: string; amount: string }>(
      `SELECT c.code, SUM(t.amount)::text AS amount
         FROM lots l JOIN transfers t ON t.debit_account_id = l.deferred_account_id
         JOIN accounts c ON c.id = t.credit_account_id
        WHERE l.account_id = $1 GROUP BY c.code`,
      [lotId.toString()],
    );
    // Refund legs out of the platform's revenue accounts are attributed to the lot by the
    // refund entry's lot_id.
    const refundedFrom = async (account: string) =>
      BigInt(
        (
          await t.pool.query<{ amount: string }>(
            `SELECT COALESCE(SUM(t.amount), 0)::text AS amount
               FROM entries e JOIN transfers t ON t.entry_seq = e.seq
               JOIN accounts d ON d.id = t.debit_account_id JOIN accounts c ON c.id = t.credit_account_id
              WHERE e.kind = 'REFUND' AND e.metadata->>'lot_id' = $1 AND d.code LIKE $2 AND c.code LIKE 'refunds.%'`,
            [lotId.toString(), `${account}.%`],
          )
        ).rows[0]!.amount,
      );
    const by = Object.fromEntries(out.rows.map((r) => [r.code, BigInt(r.amount)]));
    const recognized = by['revenue.recognized.USD'] ?? 0n;
    const breakage = by['revenue.breakage.USD'] ?? 0n;
    const refundedFromDeferred = by['refunds.USD'] ?? 0n;
    const refundedFromRecognized = await refundedFrom('revenue.recognized');
    const refundedFromBreakage = await refundedFrom('revenue.breakage');
    return {
      recognized,
      breakage,
      refundedFromDeferred,
      refundedFromRecognized,
      refundedFromBreakage,
      /** Revenue the lot leaves recognised once its refunds are netted out. */
      netRecognized: recognized - refundedFromRecognized,
      /** Breakage the lot leaves once refunds of expired credits are netted out. */
      netBreakage: breakage - refundedFromBreakage,
      refunded: refundedFromDeferred + refundedFromRecognized + refundedFromBreakage,
    };
  };

  it('refund after partial consumption claws back the refunded share of the unconsumed credits', async () => {
    const p = await purchase('r1', 100n, 10_000_000n, 'cs_r1');
    await consume('r1', 30n);
    const r = await refund('cs_r1', 5_000_000n);
    expect(r).toEqual({ entryId: r.entryId, clawedBackCredits: 50n, shortfallCredits: 0n, refundedMicrosTotal: 5_000_000n, replayed: false });
    const e = await entry(r.entryId);
    expect(e.kind).toBe(EntryKind.ENTRY_KIND_REFUND);
    expect(e.userId).toBe('r1');
    expect(e.metadata).toMatchObject({ external_ref: 'cs_r1', reason: 'REFUND', shortfall_credits: '0', from_recognized_micros: '0', lot_id: p.lotId.toString() });
    expect(legs(e)).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:r1:lot:${p.lotId}`, to: 'platform.credits_clawed_back', amount: 50n },
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: `user:r1:lot:${p.lotId}:deferred`, to: 'refunds.USD', amount: 5_000_000n },
    ]);
    expect(await lotState(p.lotId)).toEqual({ balance: 20n, held: 0n, deferred: 2_000_000n, refunded: 5_000_000n });
    const b = await t.client.auditor.getBalance({ userId: 'r1' });
    expect({ balance: b.balance, available: b.available }).toEqual({ balance: 20n, available: 20n });
    // Replaying the refund (same key, same request) returns the stored answer and writes nothing.
    const h = await head();
    expect(await refund('cs_r1', 5_000_000n, RefundReason.REFUND_REASON_REFUND, e.idempotencyKey)).toEqual({ ...r, replayed: true });
    expect(await head()).toBe(h);
    await consume('r1', 20n);
    expect(await lotMoney(p.lotId)).toMatchObject({ recognized: 5_000_000n, breakage: 0n, refunded: 5_000_000n, netRecognized: 5_000_000n });
    await t.expectInvariants();
  });

  it('partial refunds are cumulative: a full refund in parts claws back exactly the credits granted', async () => {
    for (const [i, parts] of [
      [3_333_333n, 6_666_667n],
      [3_333_333n, 3_333_333n, 3_333_334n],
      [1n, 9_999_998n, 1n],
    ].entries()) {
      const ref = `cs_parts_${i}`;
      const user = `parts${i}`;
      const p = await purchase(user, 100n, 10_000_000n, ref);
      let clawed = 0n;
      let total = 0n;
      for (const part of parts) {
        const r = await refund(ref, part);
        total += part;
        expect(r.refundedMicrosTotal).toBe(total);
        expect(r.shortfallCredits).toBe(0n);
        // Cumulative proportion: after each part, exactly floor(granted × refunded / paid) are gone.
        clawed += r.clawedBackCredits;
        expect(clawed).toBe((100n * total) / 10_000_000n);
      }
      expect(clawed).toBe(100n);
      expect(await lotState(p.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: 10_000_000n });
      const b = await t.client.auditor.getBalance({ userId: user });
      expect(b.balance).toBe(0n);
      expect(refusal(await settle(refund(ref, 1n)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'REFUND_EXCEEDS_PAYMENT' });
    }
    await t.expectInvariants();
  });

  it('a full refund in parts of a lot never used refunds all of it from deferred revenue: no revenue recognised, no breakage', async () => {
    // Nothing of these lots was consumed, so none of their money was ever recognised: ledger README §3
    // takes refund money from recognised revenue only "if already used".
    const cases = [
      { credits: 100n, paid: 10_000_000n, parts: [3_333_333n, 6_666_667n] },
      { credits: 3n, paid: 1_000_000n, parts: [500_000n, 500_000n] },
      { credits: 7n, paid: 9_990_001n, parts: [1n, 4_000_000n, 5_990_000n] },
    ];
    const got = [];
    const want = [];
    for (const [i, { credits, paid, parts }] of cases.entries()) {
      const ref = `cs_unused_${i}`;
      const p = await purchase(`unused${i}`, credits, paid, ref);
      for (const part of parts) await refund(ref, part);
      expect(await lotState(p.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: paid });
      got.push({ ref, ...(await lotMoney(p.lotId)) });
      want.push({ ref, recognized: 0n, breakage: 0n, refundedFromDeferred: paid, refundedFromRecognized: 0n, refundedFromBreakage: 0n, netRecognized: 0n, netBreakage: 0n, refunded: paid });
    }
    expect(got).toEqual(want);
    await t.expectInvariants();
  });

  it('refunding a subscription after its reset never leaves the lot with negative recognised revenue', async () => {
    // 100 credits for 10.00; 10 used (1.00 recognised), 90 expired by the next renewal (9.00
    // breakage); then the invoice is refunded in full. Whatever the refund reverses, the lot's
    // recognised revenue net of refunds cannot end below zero: at most the 1.00 it recognised.
    const start = clock.now().getTime();
    const p1 = { start: new Date(start), end: new Date(start + 30 * 86_400_000) };
    const p2 = { start: p1.end, end: new Date(p1.end.getTime() + 30 * 86_400_000) };
    const renew = (p: typeof p1, externalRef: string) =>
      t.client.payments.renewSubscription({
        idempotencyKey: key('renew'), userId: 'subref', plan: 'pro', periodStart: p.start, periodEnd: p.end,
        credits: 100n, amountMicros: 10_000_000n, currency: 'USD', externalRef,
      });
    const first = await renew(p1, 'in_subref_1');
    await consume('subref', 10n);
    clock.set(p2.start);
    expect((await renew(p2, 'in_subref_2')).expiredCredits).toBe(90n);
    const r = await refund('in_subref_1', 10_000_000n);
    expect(r).toMatchObject({ clawedBackCredits: 0n, shortfallCredits: 100n, refundedMicrosTotal: 10_000_000n });
    const m = await lotMoney(first.lotId);
    // The 9.00 of expired credits come back out of the breakage they produced, the 1.00 of
    // used ones out of recognised revenue.
    expect(m).toMatchObject({ recognized: 1_000_000n, breakage: 9_000_000n, refundedFromBreakage: 9_000_000n, refundedFromRecognized: 1_000_000n, refunded: 10_000_000n });
    expect(m.netRecognized + m.netBreakage + m.refunded).toBe(10_000_000n); // = paid
    expect(m.netRecognized).toBeGreaterThanOrEqual(0n);
    await t.expectInvariants();
  });

  it('a refund larger than the unconsumed remainder takes what is left and reports the shortfall; the lot never goes negative', async () => {
    const p = await purchase('short', 100n, 10_000_000n, 'cs_short');
    await consume('short', 80n);
    const r = await refund('cs_short', 5_000_000n);
    expect(r).toMatchObject({ clawedBackCredits: 20n, shortfallCredits: 30n, refundedMicrosTotal: 5_000_000n });
    expect((await entry(r.entryId)).metadata).toMatchObject({ shortfall_credits: '30', from_recognized_micros: '3000000' });
    expect(await lotState(p.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: 5_000_000n });
    const again = await refund('cs_short', 5_000_000n);
    expect(again).toMatchObject({ clawedBackCredits: 0n, shortfallCredits: 50n, refundedMicrosTotal: 10_000_000n });
    expect(legs(await entry(again.entryId))).toEqual([
      { kind: TransferKind.TRANSFER_KIND_POSTED, from: 'revenue.recognized.USD', to: 'refunds.USD', amount: 5_000_000n },
    ]);
    expect(await lotState(p.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: 10_000_000n });
    expect(await lotMoney(p.lotId)).toEqual({
      recognized: 8_000_000n,
      breakage: 0n,
      refundedFromDeferred: 2_000_000n,
      refundedFromRecognized: 8_000_000n,
      refundedFromBreakage: 0n,
      netRecognized: 0n,
      netBreakage: 0n,
      refunded: 10_000_000n,
    });

    // Credits under a hold are not taken either: they stay capturable.
    const q = await purchase('held', 100n, 10_000_000n, 'cs_held');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'held', credits: 60n });
    const rh = await refund('cs_held', 10_000_000n, RefundReason.REFUND_REASON_DISPUTE);
    expect(rh).toMatchObject({ clawedBackCredits: 40n, shortfallCredits: 60n, refundedMicrosTotal: 10_000_000n });
    // The whole payment comes back out of deferred revenue (ledger README §3: recognised revenue only
    // pays for credits already used): the held credits carry no deferred money any more.
    expect(await lotState(q.lotId)).toEqual({ balance: 60n, held: 60n, deferred: 0n, refunded: 10_000_000n });
    const cap = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 60n });
    expect(cap.capturedCredits).toBe(60n);
    expect(await lotState(q.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: 10_000_000n });
    const neverNegative = await t.pool.query(
      `SELECT id FROM accounts WHERE kind <> 'PLATFORM' AND (credits_posted - debits_posted < 0 OR debits_posted + debits_pending > credits_posted)`,
    );
    expect(neverNegative.rows).toEqual([]);
    await t.expectInvariants();
  });

  it('refunding beyond what was paid is FAILED_PRECONDITION REFUND_EXCEEDS_PAYMENT and writes nothing', async () => {
    const p = await purchase('over', 10n, 1_000_000n, 'cs_over');
    const h0 = await head();
    expect(refusal(await settle(refund('cs_over', 1_000_001n)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'REFUND_EXCEEDS_PAYMENT' });
    expect(await head()).toBe(h0);
    await refund('cs_over', 600_000n);
    const h1 = await head();
    const refusedKey = key('refund');
    expect(refusal(await settle(refund('cs_over', 400_001n, RefundReason.REFUND_REASON_REFUND, refusedKey)))).toEqual({
      code: status.FAILED_PRECONDITION,
      reason: 'REFUND_EXCEEDS_PAYMENT',
    });
    expect(await head()).toBe(h1);
    expect((await lotState(p.lotId)).refunded).toBe(600_000n);
    // A refused refund stores nothing, so its key may be used again for a valid request.
    const last = await refund('cs_over', 400_000n, RefundReason.REFUND_REASON_REFUND, refusedKey);
    expect(last).toMatchObject({ refundedMicrosTotal: 1_000_000n, replayed: false });
    expect(await lotState(p.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: 1_000_000n });
    await t.expectInvariants();
  });

  it('a dispute is a refund with reason DISPUTE', async () => {
    const p = await purchase('disp', 50n, 5_000_000n, 'cs_disp');
    await consume('disp', 10n);
    const d = await refund('cs_disp', 5_000_000n, RefundReason.REFUND_REASON_DISPUTE);
    expect(d).toMatchObject({ clawedBackCredits: 40n, shortfallCredits: 10n, refundedMicrosTotal: 5_000_000n });
    const e = await entry(d.entryId);
    expect(e.kind).toBe(EntryKind.ENTRY_KIND_REFUND);
    expect(e.metadata).toMatchObject({ reason: 'DISPUTE', external_ref: 'cs_disp', shortfall_credits: '10' });
    expect(e.actor).toBe('payments-svc');
    expect(await lotState(p.lotId)).toEqual({ balance: 0n, held: 0n, deferred: 0n, refunded: 5_000_000n });
    // The reason is required.
    expect(refusal(await settle(refund('cs_disp', 1n, RefundReason.REFUND_REASON_UNSPECIFIED))).code).toBe(status.INVALID_ARGUMENT);
    await t.expectInvariants();
  });

  it('an unknown external_ref is NOT_FOUND and writes nothing', async () => {
    const h = await head();
    expect(refusal(await settle(refund('cs_never_seen', 1_000n))).code).toBe(status.NOT_FOUND);
    expect(await head()).toBe(h);
    await t.expectInvariants();
  });

  it('over the life of a lot, recognised + breakage + refunded = paid to the micro (ending by consumption, by expiry, by refund)', async () => {
    // Consumption: awkward amounts, spent in uneven pieces.
    const used = await purchase('life', 7n, 9_990_001n, 'cs_life_used');
    // Expiry: a lootbox, partly used, expiring unspent.
    const expiresAt = new Date(clock.now().getTime() + 86_400_000);
    const box = await purchase('life3', 3n, 1_000_003n, 'cs_life_box', { expiresAt, bucket: Bucket.BUCKET_BONUS });
    // Refund: partly used, refunded in two parts, the second with a shortfall.
    const back = await purchase('life2', 7n, 1_000_001n, 'cs_life_back');

    for (const c of [1n, 2n, 4n]) await consume('life', c);
    await consume('life3', 1n);
    await consume('life2', 2n);
    const first = await refund('cs_life_back', 500_000n);
    expect(first).toMatchObject({ clawedBackCredits: 3n, shortfallCredits: 0n });
    await consume('life2', 2n);
    const second = await refund('cs_life_back', 500_001n);
    expect(second).toMatchObject({ clawedBackCredits: 0n, shortfallCredits: 4n, refundedMicrosTotal: 1_000_001n });
    clock.set(expiresAt);
    expect(await t.ledger.expirySweeper.sweepOnce()).toMatchObject({ expired: 1 });

    for (const [lotId, paid, ending] of [
      [used.lotId, 9_990_001n, 'consumption'],
      [box.lotId, 1_000_003n, 'expiry'],
      [back.lotId, 1_000_001n, 'refund'],
    ] as const) {
      const s = await lotState(lotId);
      expect({ ending, balance: s.balance, held: s.held, deferred: s.deferred }).toEqual({ ending, balance: 0n, held: 0n, deferred: 0n });
      const m = await lotMoney(lotId);
      // Where the lot's deferred money went, summed by destination...
      expect({ ending, total: m.recognized + m.breakage + m.refundedFromDeferred }).toEqual({ ending, total: paid });
      // ...and the same with refunds netted out of recognised revenue.
      expect({ ending, total: m.netRecognized + m.netBreakage + m.refunded }).toEqual({ ending, total: paid });
      expect(m.netRecognized).toBeGreaterThanOrEqual(0n);
    }
    expect(await lotMoney(used.lotId)).toMatchObject({ recognized: 9_990_001n, breakage: 0n, refunded: 0n });
    expect(await lotMoney(box.lotId)).toMatchObject({ recognized: 333_334n, breakage: 666_669n, refunded: 0n });
    expect((await lotMoney(back.lotId)).refunded).toBe(1_000_001n);
    await t.expectInvariants();
  });

  it('a refund applied in the same write batch as its purchase is remembered', async () => {
    // Hold the journal head so that a first command's batch waits on it, queue the purchase and
    // its refund behind it, then let go: the two run in one batch, purchase first.
    const blocker = await t.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT seq FROM journal_head WHERE id = 1 FOR UPDATE');
      const first = settle(t.client.admin.grant({ idempotencyKey: key('first'), userId: 'batch-other', credits: 1n, bucket: Bucket.BUCKET_BONUS }));
      const waitFor = async (cond: () => boolean) => {
        for (let i = 0; i < 400 && !cond(); i += 1) await sleep(5);
        expect(cond()).toBe(true);
      };
      // The grant's batch has left the queue and waits on the head lock.
      let waiting = 0;
      for (let i = 0; i < 1_000 && waiting === 0; i += 1) {
        const { rows } = await t.pool.query<{ n: number }>(
          `SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        waiting = rows[0]!.n;
        if (waiting === 0) await sleep(5);
      }
      expect(waiting).toBe(1);
      expect(t.ledger.queue.length).toBe(0);
      const bought = settle(purchase('batch', 100n, 10_000_000n, 'cs_batch'));
      await waitFor(() => t.ledger.queue.length === 1);
      const refunded = settle(refund('cs_batch', 5_000_000n));
      await waitFor(() => t.ledger.queue.length === 2);
      await blocker.query('ROLLBACK');
      const [f, p, r] = await Promise.all([first, bought, refunded]);
      expect(f.ok && p.ok && r.ok).toBe(true);
      if (!p.ok || !r.ok) return;
      expect(r.value.entryId).toBe(p.value.entryId + 1n);
      expect(r.value).toMatchObject({ clawedBackCredits: 50n, refundedMicrosTotal: 5_000_000n });
      expect(await lotState(p.value.lotId)).toEqual({ balance: 50n, held: 0n, deferred: 5_000_000n, refunded: 5_000_000n });
      // So the rest of the payment is all that can still be refunded.
      expect(refusal(await settle(refund('cs_batch', 10_000_000n)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'REFUND_EXCEEDS_PAYMENT' });
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    await t.expectInvariants();
  });
});
