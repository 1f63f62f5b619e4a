import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../lib/clock.js';
import { Bucket, errorReason, RefundReason } from './client/index.js';
import { settle, type Outcome } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// Reverse and lot bookkeeping (ledger README §3, "Reverse and lots"): a reversal leaves every
// figure of the lots it touches consistent with the money and credits it moves, or it is refused
// with a named reason and writes nothing. Each case starts from the hole it closes: reversing a
// purchase used to leave its cost basis and external_ref live (a later refund paid out of
// recognised revenue, money back twice); reversing a consume after a refund put credits back on
// a refunded lot; reversing a capture with expiry legs left the lot's breakage figure behind.

const paid = 10_000_000n;

describe('reverse keeps lot figures consistent', () => {
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

  const purchase = (userId: string, ref: string, expiresAt?: Date) =>
    t.client.payments.purchase({
      idempotencyKey: key('p'), userId, credits: 100n, bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: paid, currency: 'USD', externalRef: ref, expiresAt,
    });
  const refund = (ref: string, amountMicros: bigint, reason = RefundReason.REFUND_REASON_REFUND) =>
    t.client.payments.refund({ idempotencyKey: key('r'), externalRef: ref, amountMicros, reason });
  const reverse = (entryId: bigint) => t.client.admin.reverse({ idempotencyKey: key('rev'), entryId, reason: 'operator correction' });
  const refusalOf = (o: Outcome<unknown>) => (o.ok ? 'OK' : [status[o.error.code], errorReason(o.error)]);
  const head = async () => (await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq;
  const balance = async (userId: string) => {
    const b = await t.client.auditor.getBalance({ userId });
    return { balance: b.balance, held: b.held, available: b.available };
  };
  /** The platform totals a refund pays out of, and the refunds account itself. */
  const platform = async () => {
    const { rows } = await t.pool.query<{ code: string; net: string }>(
      `SELECT code, (credits_posted - debits_posted)::text AS net FROM accounts
        WHERE code IN ('revenue.recognized.USD', 'revenue.breakage.USD', 'refunds.USD')`,
    );
    return Object.fromEntries(rows.map((r) => [r.code, BigInt(r.net)]));
  };
  /** A lot's figures: its bookkeeping row and what its own accounts hold. */
  const lot = async (ref: string) => {
    const { rows } = await t.pool.query(
      `SELECT l.refunded_micros::text AS refunded, l.breakage_micros::text AS breakage, l.reversed,
              l.expiry_swept AS swept,
              (a.credits_posted - a.debits_posted)::text AS credits, (d.credits_posted - d.debits_posted)::text AS deferred
         FROM lots l JOIN accounts a ON a.id = l.account_id JOIN accounts d ON d.id = l.deferred_account_id
        WHERE l.external_ref = $1`,
      [ref],
    );
    const r = rows[0];
    return {
      refunded: BigInt(r.refunded), breakage: BigInt(r.breakage), reversed: r.reversed as boolean,
      swept: r.swept as boolean, credits: BigInt(r.credits), deferred: BigInt(r.deferred),
    };
  };

  it("the issue's reproduction: a reversed purchase can no longer be refunded (LOT_REVERSED); the money went back once", async () => {
    const p = await purchase('u-rp', 'pi_rp');
    const before = await platform();
    await reverse(p.entryId);
    expect(await lot('pi_rp')).toMatchObject({ reversed: true, credits: 0n, deferred: 0n, refunded: 0n });
    const h = await head();
    for (const reason of [RefundReason.REFUND_REASON_REFUND, RefundReason.REFUND_REASON_DISPUTE]) {
      const o = await settle(refund('pi_rp', paid, reason));
      expect(refusalOf(o)).toEqual(['FAILED_PRECONDITION', 'LOT_REVERSED']);
      if (!o.ok) expect(o.error.details).toContain('pi_rp');
    }
    const byTarget = await settle(
      t.client.payments.refund({ idempotencyKey: key('r'), externalRef: 'pi_rp', refundedMicrosTarget: paid, reason: RefundReason.REFUND_REASON_REFUND }),
    );
    expect(refusalOf(byTarget)).toEqual(['FAILED_PRECONDITION', 'LOT_REVERSED']);
    // Nothing was written and recognised revenue paid nothing back.
    expect(await head()).toBe(h);
    expect(await platform()).toEqual(before);
    expect(await balance('u-rp')).toEqual({ balance: 0n, held: 0n, available: 0n });
    await t.expectInvariants();
  });

  it('a purchase refunded in part (even one that clawed no credit) is LOT_REFUNDED, and nothing is written', async () => {
    await purchase('u-rr', 'pi_rr');
    // One micro buys less than a credit: the refund claws nothing back, but it took money.
    const r = await refund('pi_rr', 1n);
    expect(r.clawedBackCredits).toBe(0n);
    const original = (await t.client.auditor.listEntries({ userId: 'u-rr', pageSize: 10 })).entries[0]!;
    const h = await head();
    expect(refusalOf(await settle(reverse(original.entryId)))).toEqual(['FAILED_PRECONDITION', 'LOT_REFUNDED']);
    expect(await head()).toBe(h);
    expect(await lot('pi_rr')).toMatchObject({ reversed: false, credits: 100n, deferred: paid - 1n, refunded: 1n });
    await t.expectInvariants();
  });

  it('a consume or capture of a lot refunded since is LOT_REFUNDED: a refunded purchase never regains credits', async () => {
    // Fully spent, then fully refunded out of recognised revenue.
    await purchase('u-rc', 'pi_rc');
    const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: 'u-rc', credits: 100n });
    await refund('pi_rc', paid);
    // Mostly spent by a capture, then half refunded: the unrefunded share is 50 credits.
    await purchase('u-rh', 'pi_rh');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('h'), userId: 'u-rh', credits: 80n });
    const cap = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 80n });
    await refund('pi_rh', paid / 2n);
    const h = await head();
    for (const entryId of [c.entryId, cap.entryId]) {
      expect(refusalOf(await settle(reverse(entryId)))).toEqual(['FAILED_PRECONDITION', 'LOT_REFUNDED']);
    }
    expect(await head()).toBe(h);
    expect(await balance('u-rc')).toEqual({ balance: 0n, held: 0n, available: 0n });
    expect(await balance('u-rh')).toEqual({ balance: 0n, held: 0n, available: 0n });
    expect(await lot('pi_rc')).toMatchObject({ credits: 0n, deferred: 0n, refunded: paid });
    await t.expectInvariants();
  });

  it('after a refund: a consume drawn from the share it left can be reversed; a capture of credits it counted held cannot', async () => {
    await purchase('u-ra', 'pi_ra');
    await refund('pi_ra', paid / 2n);
    const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: 'u-ra', credits: 20n });
    await reverse(c.entryId);
    expect(await balance('u-ra')).toEqual({ balance: 50n, held: 0n, available: 50n });
    expect(await lot('pi_ra')).toMatchObject({ credits: 50n, deferred: paid / 2n, refunded: paid / 2n });

    // 60 held when half is refunded: 40 clawed at once, 10 owed by the hold. The capture after
    // the refund takes all 60; giving them back would leave 60 credits on a 50-credit share.
    await purchase('u-rw', 'pi_rw');
    const hold = await t.client.worker.reserve({ idempotencyKey: key('h'), userId: 'u-rw', credits: 60n });
    await refund('pi_rw', paid / 2n);
    const cap = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 60n });
    const h = await head();
    expect(refusalOf(await settle(reverse(cap.entryId)))).toEqual(['FAILED_PRECONDITION', 'LOT_REFUNDED']);
    expect(await head()).toBe(h);
    expect(await balance('u-rw')).toEqual({ balance: 0n, held: 0n, available: 0n });
    await t.expectInvariants();
  });

  it('a dispute won gives the lot back its figures, so its consume can then be reversed', async () => {
    await purchase('u-dw', 'pi_dw');
    const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: 'u-dw', credits: 30n });
    const d = await refund('pi_dw', paid, RefundReason.REFUND_REASON_DISPUTE);
    expect(refusalOf(await settle(reverse(c.entryId)))).toEqual(['FAILED_PRECONDITION', 'LOT_REFUNDED']);
    await t.client.payments.reinstateDispute({ idempotencyKey: key('won'), entryId: d.entryId });
    await reverse(c.entryId);
    expect(await balance('u-dw')).toEqual({ balance: 100n, held: 0n, available: 100n });
    expect(await lot('pi_dw')).toMatchObject({ credits: 100n, deferred: paid, refunded: 0n, breakage: 0n, reversed: false });
    await t.expectInvariants();
  });

  it('reversing a capture with expiry legs takes its breakage back out of the lot figure; the next sweep books it again', async () => {
    const expiresAt = new Date(clock.now().getTime() + 1_800_000);
    const p = await purchase('u-rx', 'pi_rx', expiresAt);
    const hold = await t.client.worker.reserve({ idempotencyKey: key('h'), userId: 'u-rx', credits: 60n, ttlMs: 3_600_000n });
    clock.set(new Date(expiresAt.getTime() + 1));
    await t.ledger.expirySweeper.sweepOnce();
    // The 40 unheld credits expired: $4 of breakage.
    expect(await lot('pi_rx')).toMatchObject({ credits: 60n, deferred: 6_000_000n, breakage: 4_000_000n });
    // The capture takes 20; the 40 it gives back land on an expired lot and expire in that entry.
    const cap = await t.client.worker.capture({ idempotencyKey: key('cap'), holdId: hold.holdId, credits: 20n });
    expect(await lot('pi_rx')).toMatchObject({ credits: 0n, deferred: 0n, breakage: 8_000_000n });
    const before = await platform();

    await reverse(cap.entryId);
    // Mirror: 20 credits and $2 back from consumed/recognised, 40 credits and $4 back from
    // expired/breakage: the lot's breakage figure gives back the same $4.
    const after = await lot('pi_rx');
    expect(after).toMatchObject({ credits: 60n, deferred: 6_000_000n, breakage: 4_000_000n, swept: false });
    expect((await platform())['revenue.breakage.USD']).toBe(before['revenue.breakage.USD']! - 4_000_000n);
    // The lot is expired: the sweeper expires the 60 again and books their $6 as breakage.
    clock.advance(1);
    await t.ledger.expirySweeper.sweepOnce();
    expect(await lot('pi_rx')).toMatchObject({ credits: 0n, deferred: 0n, breakage: 10_000_000n, swept: true });
    expect(await balance('u-rx')).toEqual({ balance: 0n, held: 0n, available: 0n });
    expect(p.lotId).toBeGreaterThan(0n);
    await t.expectInvariants();
  });

  it('a reversed grant cannot be given credits back by reversing an earlier consume of it', async () => {
    const g = await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'u-rg', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    const c = await t.client.worker.consume({ idempotencyKey: key('c'), userId: 'u-rg', credits: 4n });
    // The grant cannot go while 4 of its credits are spent.
    expect(refusalOf(await settle(reverse(g.entryId)))).toEqual(['FAILED_PRECONDITION', 'INSUFFICIENT_CREDITS']);
    await reverse(c.entryId);
    await reverse(g.entryId);
    const { rows } = await t.pool.query('SELECT reversed FROM lots WHERE account_id = $1', [g.lotId.toString()]);
    expect(rows).toEqual([{ reversed: true }]);
    expect(await balance('u-rg')).toEqual({ balance: 0n, held: 0n, available: 0n });
    await t.expectInvariants();
  });
});
