import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../lib/clock.js';
import { Bucket, errorReason, RefundReason } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// A refund or dispute while a hold has the purchase's credits: the credits it could not claw back
// are clawed back when the hold gives them back (release, timeout, or the uncaptured part of a
// capture), in that same entry; what the hold captures is consumed after the refund. A refunded
// purchase never yields spendable credits beyond its unrefunded share.

describe('refunds of credits under a hold', () => {
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  let t: TestLedger;
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;
  const purchase = (userId: string, ref: string) =>
    t.client.payments.purchase({
      idempotencyKey: key('p'),
      userId,
      credits: 100n,
      bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 10_000_000n,
      currency: 'USD',
      externalRef: ref,
    });
  const refund = (ref: string, amountMicros: bigint, reason = RefundReason.REFUND_REASON_DISPUTE) =>
    t.client.payments.refund({ idempotencyKey: key('r'), externalRef: ref, amountMicros, reason });
  const balance = async (userId: string) => {
    const b = await t.client.worker.getBalance({ userId });
    return { balance: b.balance, held: b.held, available: b.available };
  };
  const lotMoney = async (ref: string) => {
    const { rows } = await t.pool.query(
      `SELECT l.clawback_owed_credits::text AS owed, (d.credits_posted - d.debits_posted)::text AS deferred
         FROM lots l JOIN accounts d ON d.id = l.deferred_account_id WHERE l.external_ref = $1`,
      [ref],
    );
    return { owed: BigInt(rows[0].owed), deferred: BigInt(rows[0].deferred) };
  };

  beforeAll(async () => {
    t = await startTestLedger({ clock });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("the issue's reproduction: dispute while held, release, then Consume(100) is refused", async () => {
    await purchase('u-repro', 'pi_repro');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'u-repro', credits: 100n });
    const d = await refund('pi_repro', 10_000_000n);
    expect({ clawed: d.clawedBackCredits, shortfall: d.shortfallCredits }).toEqual({ clawed: 0n, shortfall: 100n });
    expect((await lotMoney('pi_repro')).owed).toBe(100n);
    const released = await t.client.worker.release({ idempotencyKey: key('rel'), holdId: hold.holdId });
    expect(released.releasedCredits).toBe(100n);
    // The release entry clawed the credits back, and says so.
    const entry = (await t.client.auditor.getEntry({ entryId: released.entryId })).entry!;
    expect(entry.metadata.clawed_back_credits).toBe('100');
    expect(await balance('u-repro')).toEqual({ balance: 0n, held: 0n, available: 0n });
    const spend = await settle(t.client.worker.consume({ idempotencyKey: key('c'), userId: 'u-repro', credits: 100n }));
    expect(spend.ok ? 'OK' : [status[spend.error.code], errorReason(spend.error)]).toEqual(['FAILED_PRECONDITION', 'INSUFFICIENT_CREDITS']);
    expect(await lotMoney('pi_repro')).toEqual({ owed: 0n, deferred: 0n });
    await t.expectInvariants();
  });

  it('half refunded while 60 of 100 are held: 40 clawed at once, 10 on release; 50 stay spendable with their $5', async () => {
    await purchase('u-half', 'pi_half');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'u-half', credits: 60n });
    const r = await refund('pi_half', 5_000_000n, RefundReason.REFUND_REASON_REFUND);
    expect({ clawed: r.clawedBackCredits, shortfall: r.shortfallCredits }).toEqual({ clawed: 40n, shortfall: 10n });
    await t.client.worker.release({ idempotencyKey: key('rel'), holdId: hold.holdId });
    expect(await balance('u-half')).toEqual({ balance: 50n, held: 0n, available: 50n });
    expect(await lotMoney('pi_half')).toEqual({ owed: 0n, deferred: 5_000_000n });
    await t.expectInvariants();
  });

  it('a partial capture: the captured credits are consumed after the refund, the uncaptured ones clawed back', async () => {
    await purchase('u-cap', 'pi_cap');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'u-cap', credits: 100n });
    await refund('pi_cap', 5_000_000n, RefundReason.REFUND_REASON_REFUND); // owes 50 credits
    const c = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 30n });
    expect({ captured: c.capturedCredits, released: c.releasedCredits }).toEqual({ captured: 30n, released: 70n });
    // 70 came back: 50 clawed for the refund; 20 remain, with the money the refund left for them.
    expect(await balance('u-cap')).toEqual({ balance: 20n, held: 0n, available: 20n });
    // The 30 captured recognised $3 of the $5 left; $2 stays deferred for the 20 credits.
    expect(await lotMoney('pi_cap')).toEqual({ owed: 0n, deferred: 2_000_000n });
    await t.expectInvariants();
  });

  it('a hold that captures everything it held owes nothing afterwards: those credits were consumed after the refund', async () => {
    await purchase('u-all', 'pi_all');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'u-all', credits: 100n });
    await refund('pi_all', 10_000_000n);
    await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 100n });
    expect(await balance('u-all')).toEqual({ balance: 0n, held: 0n, available: 0n });
    expect(await lotMoney('pi_all')).toEqual({ owed: 0n, deferred: 0n });
    await t.expectInvariants();
  });

  it('a hold that times out gives the owed credits back to the refund in its timeout entry', async () => {
    await purchase('u-ttl', 'pi_ttl');
    await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'u-ttl', credits: 80n, ttlMs: 5_000n });
    const r = await refund('pi_ttl', 10_000_000n);
    expect({ clawed: r.clawedBackCredits, shortfall: r.shortfallCredits }).toEqual({ clawed: 20n, shortfall: 80n });
    clock.advance(5_000);
    expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
    expect(await balance('u-ttl')).toEqual({ balance: 0n, held: 0n, available: 0n });
    await t.expectInvariants();
  });

  it('a won dispute owes nothing more: the released credits stay with the user', async () => {
    await purchase('u-won', 'pi_won');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('hold'), userId: 'u-won', credits: 100n });
    const d = await refund('pi_won', 10_000_000n);
    await t.client.payments.reinstateDispute({ idempotencyKey: key('won'), entryId: d.entryId });
    await t.client.worker.release({ idempotencyKey: key('rel'), holdId: hold.holdId });
    expect(await balance('u-won')).toEqual({ balance: 100n, held: 0n, available: 100n });
    await t.expectInvariants();
  });
});
