import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { startPaymentsTest, type PaymentsTest } from './testing/payments-harness.js';
import { charge, checkoutSession, event, stripeId } from './testing/stripe-objects.js';

// Two payments processes on one inbox (scale-out): deliveries reach either, each event is
// stored once and applied once; a pass of one never applies what the other claimed.

let t: TestLedger;
let a: PaymentsTest;
let b: PaymentsTest;

beforeAll(async () => {
  t = await startTestLedger();
  const token = t.options.credentials.find((c) => c.role === 'payments')!.token;
  a = await startPaymentsTest({ databaseUrl: t.db.url, ledgerAddr: t.address, ledgerToken: token });
  b = await startPaymentsTest({ databaseUrl: t.db.url, ledgerAddr: t.address, ledgerToken: token });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await t?.close();
});

describe('two payments processes on one inbox', () => {
  it('60 purchases and their refunds, each delivered to both at once: every one stored once and applied once', async () => {
    const sessions = Array.from({ length: 60 }, (_, i) =>
      checkoutSession({ amountTotal: 6999, metadata: { user_id: `scale-${i % 7}`, package_id: 'creator-pack' }, paymentIntent: stripeId('pi'), paymentStatus: 'paid', status: 'complete' }),
    );
    const purchases = sessions.map((s) => event('checkout.session.completed', s));
    // Half of them are also refunded in part, the refund racing its purchase.
    const refunds = sessions.slice(0, 30).map((s) => event('charge.refunded', charge({ amount: 6999, amountRefunded: 3500, paymentIntent: String(s.payment_intent) })));
    const answers = await Promise.all([...purchases, ...refunds].flatMap((e) => [a.deliver(e), b.deliver(e)]));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as { duplicate: boolean }[];
    expect(bodies.filter((x) => !x.duplicate)).toHaveLength(90);
    await a.settled(20_000);
    const { rows } = await a.pool.query(`SELECT status, count(*)::int AS n FROM payments.stripe_events GROUP BY status`);
    expect(rows).toEqual([{ status: 'APPLIED', n: 90 }]);
    const entries = await t.pool.query(`SELECT kind, count(*)::int AS n FROM entries WHERE kind IN ('PURCHASE', 'REFUND') GROUP BY kind ORDER BY kind`);
    expect(entries.rows).toEqual([
      { kind: 'PURCHASE', n: 60 },
      { kind: 'REFUND', n: 30 },
    ]);
    // 60 × 100 credits bought; 30 refunds of 3500/6999 claw back ⌊100·3500/6999⌋ = 50 each.
    let total = 0n;
    for (let u = 0; u < 7; u += 1) total += (await t.client.auditor.getBalance({ userId: `scale-${u}` })).balance;
    expect(total).toBe(60n * 100n - 30n * 50n);
    await t.expectInvariants();
  });
});
