import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, RefundReason } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { refusal, settle } from './testing/call-outcome.js';

// Two additions for the payments service (issue 9):
// - Refund's `refunded_micros_target`: Stripe reports a charge's refunds as a cumulative
//   `amount_refunded`; the ledger refunds the difference from what refunds total so far, inside
//   its batch, so any order, repetition or race of those totals ends at exactly the last one.
// - ReinstateDispute: a won dispute undoes its DISPUTE refund entry (money and credits back,
//   the lot's refunded/disputed/breakage bookkeeping with them), at most once.
// Every test ends with the journal's invariants, and lot money is checked to the micro:
// recognised + breakage + refunded + still deferred = paid, with the lot's own columns agreeing.

const usd = (dollars: number) => BigInt(Math.round(dollars * 1_000_000));

describe('cumulative refunds and won disputes', () => {
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

  const purchase = (userId: string, credits: bigint, amountMicros: bigint, externalRef: string, expiresAt?: Date) =>
    t.client.payments.purchase({
      idempotencyKey: key('buy'),
      userId,
      credits,
      bucket: Bucket.BUCKET_PURCHASED,
      amountMicros,
      currency: 'USD',
      externalRef,
      ...(expiresAt ? { expiresAt } : {}),
    });
  const refundTo = (externalRef: string, refundedMicrosTarget: bigint, idempotencyKey = `${externalRef}:refunded:${refundedMicrosTarget}`) =>
    t.client.payments.refund({ idempotencyKey, externalRef, refundedMicrosTarget, reason: RefundReason.REFUND_REASON_REFUND });
  const dispute = (externalRef: string, amountMicros: bigint, idempotencyKey = key('dp')) =>
    t.client.payments.refund({ idempotencyKey, externalRef, amountMicros, reason: RefundReason.REFUND_REASON_DISPUTE });
  const consume = (userId: string, credits: bigint) => t.client.worker.consume({ idempotencyKey: key('use'), userId, credits });
  const balance = async (userId: string) => (await t.client.payments.getBalance({ userId })).balance;

  /** A lot's columns and its money as the journal says, attributed as refund.e2e.test.ts does. */
  const lotMoney = async (lotId: bigint) => {
    const lot = (
      await t.pool.query<{ paid: string; refunded: string; disputed: string; breakage: string; deferred_id: string; deferred: string; credits: string }>(
        `SELECT l.cost_basis_micros::text AS paid, l.refunded_micros::text AS refunded, l.disputed_micros::text AS disputed,
                l.breakage_micros::text AS breakage, l.deferred_account_id::text AS deferred_id,
                (d.credits_posted - d.debits_posted)::text AS deferred, (a.credits_posted - a.debits_posted)::text AS credits
           FROM lots l JOIN accounts d ON d.id = l.deferred_account_id JOIN accounts a ON a.id = l.account_id
          WHERE l.account_id = $1`,
        [lotId.toString()],
      )
    ).rows[0]!;
    // Money legs of the lot: those moving its deferred revenue, and the platform-only legs of
    // the refunds and reinstatements that name the lot.
    const legs = await t.pool.query<{ debit: string; credit: string; amount: string }>(
      `SELECT d.code AS debit, c.code AS credit, SUM(t.amount)::text AS amount
         FROM transfers t JOIN entries e ON e.seq = t.entry_seq
         JOIN accounts d ON d.id = t.debit_account_id JOIN accounts c ON c.id = t.credit_account_id
        WHERE t.unit <> 'CREDIT'
          AND (t.debit_account_id = $1 OR t.credit_account_id = $1
               OR (e.kind IN ('REFUND', 'REVERSE') AND e.metadata->>'lot_id' = $2))
        GROUP BY 1, 2`,
      [lot.deferred_id, lotId.toString()],
    );
    const net = { recognized: 0n, breakage: 0n, refunded: 0n };
    const side = (code: string): keyof typeof net | null =>
      code.startsWith('revenue.recognized.') ? 'recognized' : code.startsWith('revenue.breakage.') ? 'breakage' : code.startsWith('refunds.') ? 'refunded' : null;
    for (const r of legs.rows) {
      const into = side(r.credit);
      const outOf = side(r.debit);
      if (into) net[into] += BigInt(r.amount);
      if (outOf) net[outOf] -= BigInt(r.amount);
    }
    return {
      paid: BigInt(lot.paid),
      deferred: BigInt(lot.deferred),
      credits: BigInt(lot.credits),
      columns: { refunded: BigInt(lot.refunded), disputed: BigInt(lot.disputed), breakage: BigInt(lot.breakage) },
      net,
    };
  };
  const expectLotBalanced = async (lotId: bigint) => {
    const m = await lotMoney(lotId);
    expect(m.net.recognized + m.net.breakage + m.net.refunded + m.deferred).toBe(m.paid);
    expect(m.columns.refunded).toBe(m.net.refunded);
    expect(m.columns.breakage).toBe(m.net.breakage);
    expect(m.net.recognized).toBeGreaterThanOrEqual(0n);
    return m;
  };

  it('cumulative totals in any order and repeated refund exactly the last one; lower totals are ALREADY_REFUNDED', async () => {
    const bought = await purchase('cum', 100n, usd(10), 'pi_cum');
    const first = await refundTo('pi_cum', usd(3));
    expect(first).toMatchObject({ clawedBackCredits: 30n, refundedMicrosTotal: usd(3), replayed: false });
    // The same total again under the same key is a replay; under another key it is a refusal
    // that writes nothing.
    expect(await refundTo('pi_cum', usd(3))).toMatchObject({ entryId: first.entryId, replayed: true });
    expect(refusal(await settle(refundTo('pi_cum', usd(3), key('other'))))).toEqual({
      code: status.FAILED_PRECONDITION,
      reason: 'ALREADY_REFUNDED',
    });
    // A late, lower total changes nothing.
    expect(refusal(await settle(refundTo('pi_cum', usd(1))))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'ALREADY_REFUNDED' });
    expect(await refundTo('pi_cum', usd(6))).toMatchObject({ clawedBackCredits: 30n, refundedMicrosTotal: usd(6) });
    expect(await refundTo('pi_cum', usd(10))).toMatchObject({ clawedBackCredits: 40n, refundedMicrosTotal: usd(10) });
    // An earlier total delivered again after a later one: a replay under its own key, a
    // refusal under another; either way nothing moves.
    expect(await refundTo('pi_cum', usd(6))).toMatchObject({ refundedMicrosTotal: usd(6), replayed: true });
    expect(refusal(await settle(refundTo('pi_cum', usd(6), key('late'))))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'ALREADY_REFUNDED' });
    expect(refusal(await settle(refundTo('pi_cum', usd(10) + 1n)))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'REFUND_EXCEEDS_PAYMENT' });
    const m = await expectLotBalanced(bought.lotId);
    expect(m).toMatchObject({ credits: 0n, deferred: 0n, net: { refunded: usd(10), recognized: 0n } });
    expect(await balance('cum')).toBe(0n);
    await t.expectInvariants();
  });

  it('20 concurrent cumulative totals (shuffled) end at the highest, each micro refunded once', async () => {
    const bought = await purchase('race', 200n, usd(20), 'pi_race');
    const targets = Array.from({ length: 20 }, (_, i) => usd(i + 1));
    for (let i = targets.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [targets[i], targets[j]] = [targets[j]!, targets[i]!];
    }
    const outcomes = await Promise.all(targets.map((target) => settle(refundTo('pi_race', target))));
    let clawed = 0n;
    for (const o of outcomes) {
      if (o.ok) clawed += o.value.clawedBackCredits;
      else expect(refusal(o)).toEqual({ code: status.FAILED_PRECONDITION, reason: 'ALREADY_REFUNDED' });
    }
    expect(clawed).toBe(200n);
    const m = await expectLotBalanced(bought.lotId);
    expect(m.net.refunded).toBe(usd(20));
    // The refund entries' amounts add up to the total: no difference was refunded twice.
    const { rows } = await t.pool.query<{ sum: string }>(
      `SELECT SUM((metadata->>'amount_micros')::bigint)::text AS sum FROM entries WHERE kind = 'REFUND' AND metadata->>'external_ref' = 'pi_race'`,
    );
    expect(BigInt(rows[0]!.sum)).toBe(usd(20));
    await t.expectInvariants();
  });

  it('20 concurrent deliveries of one total under one key refund once', async () => {
    await purchase('dup', 10n, usd(1), 'pi_dup');
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => refundTo('pi_dup', usd(0.5))));
    expect(new Set(outcomes.map((o) => o.entryId)).size).toBe(1);
    expect(outcomes.filter((o) => !o.replayed)).toHaveLength(1);
    expect(await balance('dup')).toBe(5n);
    await t.expectInvariants();
  });

  it('a won dispute gives back the credits and money it took, also from recognised revenue; at most once', async () => {
    const bought = await purchase('won', 100n, usd(10), 'pi_won');
    await consume('won', 30n);
    const dp = await dispute('pi_won', usd(10));
    expect(dp).toMatchObject({ clawedBackCredits: 70n, shortfallCredits: 30n, refundedMicrosTotal: usd(10) });
    let m = await expectLotBalanced(bought.lotId);
    expect(m).toMatchObject({ credits: 0n, columns: { refunded: usd(10), disputed: usd(10) }, net: { recognized: 0n } });

    const reinstateKey = key('won');
    const won = await t.client.payments.reinstateDispute({ idempotencyKey: reinstateKey, entryId: dp.entryId });
    expect(won).toMatchObject({ reinstatedCredits: 70n, replayed: false });
    expect(await t.client.payments.reinstateDispute({ idempotencyKey: reinstateKey, entryId: dp.entryId })).toMatchObject({
      entryId: won.entryId,
      replayed: true,
    });
    expect(refusal(await settle(t.client.payments.reinstateDispute({ idempotencyKey: key('won'), entryId: dp.entryId })))).toEqual({
      code: status.FAILED_PRECONDITION,
      reason: 'ALREADY_REVERSED',
    });
    const entry = (await t.client.auditor.getEntry({ entryId: won.entryId })).entry!;
    expect(entry.reversesEntryId).toBe(dp.entryId);
    m = await expectLotBalanced(bought.lotId);
    expect(m).toMatchObject({
      credits: 70n,
      deferred: usd(7),
      columns: { refunded: 0n, disputed: 0n, breakage: 0n },
      net: { recognized: usd(3), refunded: 0n },
    });
    expect(await balance('won')).toBe(70n);
    // Refunds after the won dispute count from zero: the dispute no longer counts.
    expect(await refundTo('pi_won', usd(1))).toMatchObject({ clawedBackCredits: 10n, refundedMicrosTotal: usd(1) });
    await expectLotBalanced(bought.lotId);
    await t.expectInvariants();
  });

  it('disputes are counted apart from cumulative refunds; a lost dispute stays clawed back', async () => {
    const bought = await purchase('mix', 100n, usd(10), 'pi_mix');
    await refundTo('pi_mix', usd(2));
    const dp = await dispute('pi_mix', usd(8));
    expect(dp).toMatchObject({ clawedBackCredits: 80n, refundedMicrosTotal: usd(10) });
    // The refund total (2) is reached already; the dispute does not count toward it.
    expect(refusal(await settle(refundTo('pi_mix', usd(2), key('again'))))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'ALREADY_REFUNDED' });
    // More refunds than the money left after the dispute: refused, nothing written.
    expect(refusal(await settle(refundTo('pi_mix', usd(3))))).toEqual({ code: status.FAILED_PRECONDITION, reason: 'REFUND_EXCEEDS_PAYMENT' });
    const m = await expectLotBalanced(bought.lotId);
    expect(m).toMatchObject({ credits: 0n, deferred: 0n, columns: { refunded: usd(10), disputed: usd(8) } });
    await t.expectInvariants();
  });

  it('a dispute won after its lot expired: the credits come back and the expiry sweeper expires them', async () => {
    const expiresAt = new Date(clock.now().getTime() + 3_600_000);
    const bought = await purchase('late', 10n, usd(1), 'pi_late', expiresAt);
    const dp = await dispute('pi_late', usd(0.6));
    expect(dp).toMatchObject({ clawedBackCredits: 6n });
    clock.set(expiresAt);
    expect(await t.ledger.expirySweeper.sweepOnce()).toMatchObject({ expired: 1 });
    let m = await expectLotBalanced(bought.lotId);
    expect(m).toMatchObject({ credits: 0n, net: { breakage: usd(0.4), refunded: usd(0.6) } });
    const won = await t.client.payments.reinstateDispute({ idempotencyKey: key('late'), entryId: dp.entryId });
    expect(won.reinstatedCredits).toBe(6n);
    // Given back to an expired lot, they are not spendable: the sweeper expires them.
    expect((await t.client.payments.getBalance({ userId: 'late' })).available).toBe(0n);
    expect(await t.ledger.expirySweeper.sweepOnce()).toMatchObject({ expired: 1 });
    m = await expectLotBalanced(bought.lotId);
    expect(m).toMatchObject({ credits: 0n, deferred: 0n, columns: { refunded: 0n, disputed: 0n }, net: { breakage: usd(1), refunded: 0n } });
    await t.expectInvariants();
  });

  it('refuses what is not a dispute refund, bad requests and callers without the role, writing nothing', async () => {
    const bought = await purchase('bad', 10n, usd(1), 'pi_bad');
    const refund = await t.client.payments.refund({ idempotencyKey: key('r'), externalRef: 'pi_bad', amountMicros: usd(0.1), reason: RefundReason.REFUND_REASON_REFUND });
    const dp = await dispute('pi_bad', usd(0.1));
    const before = (await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq;

    for (const entryId of [refund.entryId, bought.entryId]) {
      expect(refusal(await settle(t.client.payments.reinstateDispute({ idempotencyKey: key('x'), entryId })))).toEqual({
        code: status.FAILED_PRECONDITION,
        reason: 'NOT_REVERSIBLE',
      });
    }
    // An admin Reverse still refuses refunds, disputes included.
    expect(refusal(await settle(t.client.admin.reverse({ idempotencyKey: key('x'), entryId: dp.entryId, reason: 'try' })))).toEqual({
      code: status.FAILED_PRECONDITION,
      reason: 'NOT_REVERSIBLE',
    });
    expect(refusal(await settle(t.client.payments.reinstateDispute({ idempotencyKey: key('x'), entryId: 999_999n })))).toMatchObject({ code: status.NOT_FOUND });
    const zero = await settle(t.client.payments.reinstateDispute({ idempotencyKey: key('x'), entryId: 0n }));
    expect(refusal(zero).code).toBe(status.INVALID_ARGUMENT);
    expect(zero.ok ? '' : zero.error.details).toMatch(/entry_id/);
    const both = await settle(
      t.client.payments.refund({ idempotencyKey: key('x'), externalRef: 'pi_bad', amountMicros: 1n, refundedMicrosTarget: 2n, reason: RefundReason.REFUND_REASON_REFUND }),
    );
    expect(refusal(both).code).toBe(status.INVALID_ARGUMENT);
    expect(both.ok ? '' : both.error.details).toMatch(/refunded_micros_target/);
    const disputeTarget = await settle(
      t.client.payments.refund({ idempotencyKey: key('x'), externalRef: 'pi_bad', refundedMicrosTarget: 2n, reason: RefundReason.REFUND_REASON_DISPUTE }),
    );
    expect(refusal(disputeTarget).code).toBe(status.INVALID_ARGUMENT);
    const negative = await settle(t.client.payments.refund({ idempotencyKey: key('x'), externalRef: 'pi_bad', refundedMicrosTarget: -5n, reason: RefundReason.REFUND_REASON_REFUND }));
    expect(refusal(negative).code).toBe(status.INVALID_ARGUMENT);
    expect(refusal(await settle(t.client.payments.refund({ idempotencyKey: key('x'), externalRef: 'pi_none', refundedMicrosTarget: 2n, reason: RefundReason.REFUND_REASON_REFUND })))).toMatchObject({
      code: status.NOT_FOUND,
    });
    expect(refusal(await settle(t.client.worker.reinstateDispute({ idempotencyKey: key('x'), entryId: dp.entryId })))).toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    expect((await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq).toBe(before);
    await expectLotBalanced(bought.lotId);
    await t.expectInvariants();
  });
});
