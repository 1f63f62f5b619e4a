import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drawCredits, windowSeed } from './catalog/fair-draw.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { lootboxSeedSecret, startPaymentsTest, waitFor, webhookSecret, type PaymentsTest } from './testing/payments-harness.js';
import { charge, checkoutSession, dispute, event, invoice, stripeId } from './testing/stripe-objects.js';

// Stripe webhooks → inbox → ledger, against a real ledger on a fresh database and the
// payments service on 127.0.0.1:0. Events have Stripe's object shapes (API 2026-10-28) and are
// signed with Stripe's own generateTestHeaderString. Every test ends with the ledger's
// invariants.

const ledgerClock = new ManualClock('2026-11-15T12:00:00.000Z');
let t: TestLedger;
let p: PaymentsTest;

beforeAll(async () => {
  t = await startTestLedger({ clock: ledgerClock, options: { currencies: ['USD', 'EUR', 'JPY'] } });
  const payments = t.options.credentials.find((c) => c.role === 'payments')!;
  p = await startPaymentsTest({ databaseUrl: t.db.url, ledgerAddr: t.address, ledgerToken: payments.token });
});
afterAll(async () => {
  await p?.close();
  await t?.close();
});

const balance = async (userId: string) => {
  const b = await t.client.auditor.getBalance({ userId });
  return { total: b.balance, subscription: b.buckets[0]!.balance, bonus: b.buckets[1]!.balance, purchased: b.buckets[2]!.balance, lots: b.lots };
};
const paidSession = (userId: string, packageId: string, amountTotal: number, extra: Record<string, string> = {}) =>
  checkoutSession({ amountTotal, metadata: { user_id: userId, package_id: packageId, ...extra }, clientReferenceId: userId, paymentIntent: stripeId('pi'), paymentStatus: 'paid', status: 'complete' });
const ok = async (r: Promise<Response>) => {
  const res = await r;
  expect(res.status).toBe(200);
  return res;
};
const storedCount = async () => Number((await p.pool.query(`SELECT count(*) FROM payments.stripe_events`)).rows[0].count);
const purchaseEntries = async (externalRef: string) =>
  Number((await t.pool.query(`SELECT count(*) FROM entries WHERE kind = 'PURCHASE' AND metadata->>'external_ref' = $1`, [externalRef])).rows[0].count);

describe('checkout sessions', () => {
  it('a paid session buys the package once: PURCHASED credits, amount_total in micros, the payment intent as external_ref', async () => {
    const session = paidSession('u-buy', 'studio-pack', 29999);
    const completed = event('checkout.session.completed', session);
    await ok(p.deliver(completed));
    await p.settled();
    expect(await p.eventRow(completed.id)).toMatchObject({ status: 'APPLIED', attempts: 1 });
    const b = await balance('u-buy');
    expect(b).toMatchObject({ total: 500n, purchased: 500n, bonus: 0n });
    expect(b.lots[0]).toMatchObject({ costBasisMicros: 299_990_000n, currency: 'USD', externalRef: session.payment_intent });
    // The asynchronous-payment event for the same session replays the same purchase.
    const asyncEvent = event('checkout.session.async_payment_succeeded', session);
    await ok(p.deliver(asyncEvent));
    await p.settled();
    expect(await p.eventRow(asyncEvent.id)).toMatchObject({ status: 'APPLIED' });
    expect((await balance('u-buy')).total).toBe(500n);
    expect(await purchaseEntries(String(session.payment_intent))).toBe(1);
    await t.expectInvariants();
  });

  it('the same event delivered 20 times at once is stored once and credited once', async () => {
    const session = paidSession('u-twenty', 'creator-pack', 6999);
    const e = event('checkout.session.completed', session);
    const payload = JSON.stringify(e);
    const before = await storedCount();
    const answers = await Promise.all(Array.from({ length: 20 }, () => p.deliver(payload)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    const bodies = await Promise.all(answers.map((a) => a.json() as Promise<{ duplicate: boolean }>));
    expect(bodies.filter((b) => !b.duplicate)).toHaveLength(1);
    await p.settled();
    expect(await storedCount()).toBe(before + 1);
    expect((await balance('u-twenty')).total).toBe(100n);
    expect(await purchaseEntries(String(session.payment_intent))).toBe(1);
    await t.expectInvariants();
  });

  it('20 different events about one session at once (completed and async succeeded, retried) credit once', async () => {
    const session = paidSession('u-many', 'starter-pack', 1999);
    const events = Array.from({ length: 20 }, (_, i) => event(i % 2 ? 'checkout.session.async_payment_succeeded' : 'checkout.session.completed', session));
    await Promise.all(events.map((e) => ok(p.deliver(e))));
    await p.settled();
    for (const e of events) expect((await p.eventRow(e.id)).status).toBe('APPLIED');
    expect((await balance('u-many')).total).toBe(25n);
    expect(await purchaseEntries(String(session.payment_intent))).toBe(1);
    await t.expectInvariants();
  });

  it('unpaid and failed asynchronous payments credit nothing; a subscription session leaves the credits to invoice.paid', async () => {
    const unpaid = checkoutSession({ amountTotal: 29999, metadata: { user_id: 'u-unpaid', package_id: 'studio-pack' }, paymentIntent: stripeId('pi'), paymentStatus: 'unpaid', status: 'complete' });
    const failed = { ...unpaid, payment_status: 'unpaid' };
    const subscriptionSession = checkoutSession({ mode: 'subscription', amountTotal: 7999, metadata: { user_id: 'u-unpaid', plan_id: 'pro-monthly' }, paymentStatus: 'paid', status: 'complete', subscription: stripeId('sub') });
    const events = [event('checkout.session.completed', unpaid), event('checkout.session.async_payment_failed', failed), event('checkout.session.completed', subscriptionSession)];
    for (const e of events) await ok(p.deliver(e));
    await p.settled();
    for (const e of events) expect((await p.eventRow(e.id)).status).toBe('IGNORED');
    expect((await t.client.auditor.listEntries({ userId: 'u-unpaid' })).entries).toEqual([]);
    await t.expectInvariants();
  });

  it('amounts convert to micros by the currency\'s own exponent (cents for EUR, whole yen for JPY)', async () => {
    const eur = checkoutSession({ amountTotal: 29999, currency: 'eur', metadata: { user_id: 'u-fx', package_id: 'studio-pack' }, paymentIntent: stripeId('pi'), paymentStatus: 'paid' });
    const jpy = checkoutSession({ amountTotal: 45000, currency: 'jpy', metadata: { user_id: 'u-fx', package_id: 'studio-pack' }, paymentIntent: stripeId('pi'), paymentStatus: 'paid' });
    for (const s of [eur, jpy]) await ok(p.deliver(event('checkout.session.completed', s)));
    await p.settled();
    const lots = (await balance('u-fx')).lots.map((l) => [l.currency, l.costBasisMicros]);
    expect(lots).toEqual(expect.arrayContaining([['EUR', 299_990_000n], ['JPY', 45_000_000_000n]]));
    await t.expectInvariants();
  });

  it('a lootbox goes to the BONUS bucket, never expiring, with the provably fair draw of its window and session', async () => {
    const opensAt = new Date('2026-11-13T18:00:00.000Z');
    const session = paidSession('u-box', 'weekend-flash-sale', 4999, { lootbox_window_opens_at: opensAt.toISOString() });
    await ok(p.deliver(event('checkout.session.completed', session)));
    await p.settled();
    const expected = drawCredits(windowSeed(lootboxSeedSecret, 'weekend-flash-sale', opensAt), String(session.id), 80n, 200n);
    const b = await balance('u-box');
    expect(b).toMatchObject({ total: expected, bonus: expected, purchased: 0n });
    expect(b.lots[0]!.expiresAt).toBeUndefined();
    await t.expectInvariants();
  });
});

describe('webhook signatures and bodies', () => {
  const body = () => JSON.stringify(event('checkout.session.completed', paidSession('u-sig', 'studio-pack', 29999)));
  const post = (payload: string, headers: Record<string, string>) =>
    fetch(p.webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload });

  it('forged, stale, tampered, unsigned and wrong-secret deliveries get 400 and store nothing; oversized bodies 413', async () => {
    const before = await storedCount();
    const payload = body();
    const now = Math.floor(Date.now() / 1000);
    const sign = (secret: string, ts = now, data = payload) => p.signer.webhooks.generateTestHeaderString({ payload: data, secret, timestamp: ts });
    const cases: [string, Promise<Response>, number][] = [
      ['forged (another secret)', post(payload, { 'stripe-signature': sign('whsec_someone_else') }), 400],
      ['stale (301 s old)', post(payload, { 'stripe-signature': sign('whsec_test_payments_0123456789abcdef', now - 301) }), 400],
      ['tampered body', post(payload.replace('29999', '1'), { 'stripe-signature': sign('whsec_test_payments_0123456789abcdef') }), 400],
      ['unsigned', post(payload, {}), 400],
      ['garbage signature', post(payload, { 'stripe-signature': 't=1,v1=00' }), 400],
      ['empty body', post('', { 'stripe-signature': sign('whsec_test_payments_0123456789abcdef', now, '') }), 400],
    ];
    for (const [name, response, code] of cases) {
      const res = await response;
      expect({ name, status: res.status }).toEqual({ name, status: code });
      const json = (await res.json()) as { message: string };
      expect(json.message).toMatch(/stripe-signature|body/);
    }
    // Just inside the tolerance is accepted.
    const fresh = body();
    expect((await post(fresh, { 'stripe-signature': sign('whsec_test_payments_0123456789abcdef', now - 290, fresh) })).status).toBe(200);
    const big = JSON.stringify({ ...JSON.parse(payload), padding: 'x'.repeat(1024 * 1024) });
    const oversized = await post(big, { 'stripe-signature': sign('whsec_test_payments_0123456789abcdef', now, big) });
    expect(oversized.status).toBe(413);
    expect(await storedCount()).toBe(before + 1);
    await p.settled();
    await t.expectInvariants();
  });
});

describe('refunds and disputes', () => {
  async function bought(userId: string, packageId = 'creator-pack', amount = 6999) {
    const session = paidSession(userId, packageId, amount);
    await ok(p.deliver(event('checkout.session.completed', session)));
    await p.settled();
    return { pi: String(session.payment_intent), chargeId: stripeId('ch') };
  }

  it('a refund that arrives before its purchase waits in the inbox and applies after it', async () => {
    const session = paidSession('u-early', 'creator-pack', 6999);
    const pi = String(session.payment_intent);
    const refund = event('charge.refunded', charge({ amount: 6999, amountRefunded: 6999, paymentIntent: pi }));
    await ok(p.deliver(refund));
    await waitFor(async () => (await p.eventRow(refund.id)).attempts >= 2, 5_000, 'the refund to be retried');
    expect(await p.eventRow(refund.id)).toMatchObject({ status: 'PENDING' });
    expect((await p.eventRow(refund.id)).last_error).toMatch(/NOT_FOUND/);
    await ok(p.deliver(event('checkout.session.completed', session)));
    await p.settled();
    expect((await p.eventRow(refund.id)).status).toBe('APPLIED');
    expect((await balance('u-early')).total).toBe(0n);
    await t.expectInvariants();
  });

  it('two partial refunds then a full one, delivered out of order and twice: the ledger ends at Stripe\'s cumulative total', async () => {
    const { pi, chargeId } = await bought('u-refund');
    const at = (refunded: number) => event('charge.refunded', charge({ id: chargeId, amount: 6999, amountRefunded: refunded, paymentIntent: pi }));
    const first = at(2000);
    const second = at(5000);
    const full = at(6999);
    // The second partial refund arrives first, the full one twice, the first last.
    for (const e of [second, full, full, first]) await ok(p.deliver(e));
    await p.settled();
    for (const e of [first, second, full]) expect((await p.eventRow(e.id)).status).toBe('APPLIED');
    const lots = (await t.client.auditor.getBalance({ userId: 'u-refund' })).lots;
    expect(lots).toEqual([]);
    const refunded = await t.pool.query(`SELECT refunded_micros::text FROM lots WHERE external_ref = $1`, [pi]);
    expect(refunded.rows[0].refunded_micros).toBe('69990000');
    expect((await balance('u-refund')).total).toBe(0n);

    // Step by step, in order, on another purchase: 2000, 5000, then full.
    const b = await bought('u-refund2');
    const step = (refunded: number) => event('charge.refunded', charge({ id: b.chargeId, amount: 6999, amountRefunded: refunded, paymentIntent: b.pi }));
    await ok(p.deliver(step(2000)));
    await p.settled();
    expect((await balance('u-refund2')).total).toBe(72n); // 100 − ⌊100·2000/6999⌋ = 100 − 28
    await ok(p.deliver(step(5000)));
    await p.settled();
    expect((await balance('u-refund2')).total).toBe(29n); // 100 − ⌊100·5000/6999⌋ = 100 − 71
    await ok(p.deliver(step(6999)));
    await p.settled();
    expect((await balance('u-refund2')).total).toBe(0n);
    await t.expectInvariants();
  });

  it('a dispute claws back; won gives the credits back; lost keeps them clawed back; won before created nets to nothing', async () => {
    const won = await bought('u-won');
    const dpWon = dispute({ amount: 6999, charge: won.chargeId, paymentIntent: won.pi, status: 'needs_response' });
    await ok(p.deliver(event('charge.dispute.created', dpWon)));
    await p.settled();
    expect((await balance('u-won')).total).toBe(0n);
    await ok(p.deliver(event('charge.dispute.closed', { ...dpWon, status: 'won' })));
    await p.settled();
    expect((await balance('u-won')).total).toBe(100n);

    const lost = await bought('u-lost');
    const dpLost = dispute({ amount: 6999, charge: lost.chargeId, paymentIntent: lost.pi, status: 'needs_response' });
    await ok(p.deliver(event('charge.dispute.created', dpLost)));
    await ok(p.deliver(event('charge.dispute.closed', { ...dpLost, status: 'lost' })));
    await p.settled();
    expect((await balance('u-lost')).total).toBe(0n);
    expect(Number((await t.pool.query(`SELECT count(*) FROM entries WHERE idempotency_key = $1`, [`stripe:dp:${dpLost.id}`])).rows[0].count)).toBe(1);

    const late = await bought('u-late');
    const dpLate = dispute({ amount: 6999, charge: late.chargeId, paymentIntent: late.pi, status: 'needs_response' });
    const createdLate = event('charge.dispute.created', dpLate);
    await ok(p.deliver(event('charge.dispute.closed', { ...dpLate, status: 'won' })));
    await p.settled();
    await ok(p.deliver(createdLate));
    await p.settled();
    expect((await p.eventRow(createdLate.id)).status).toBe('APPLIED');
    expect((await balance('u-late')).total).toBe(100n);

    // An inquiry withdraws no funds: nothing is clawed back.
    const inquiry = await bought('u-inquiry');
    await ok(p.deliver(event('charge.dispute.created', dispute({ amount: 6999, charge: inquiry.chargeId, paymentIntent: inquiry.pi, status: 'warning_needs_response' }))));
    await p.settled();
    expect((await balance('u-inquiry')).total).toBe(100n);
    await t.expectInvariants();
  });
});

describe('subscriptions', () => {
  it('invoice renewals across a month boundary: the new period replaces the old one\'s remainder', async () => {
    const sub = stripeId('sub');
    const metadata = { user_id: 'u-sub', plan_id: 'pro-monthly' };
    const nov = { start: Date.UTC(2026, 10, 1) / 1000, end: Date.UTC(2026, 11, 1) / 1000 };
    const dec = { start: Date.UTC(2026, 11, 1) / 1000, end: Date.UTC(2027, 0, 1) / 1000 };
    const first = event('invoice.paid', invoice({ amountPaid: 7999, billingReason: 'subscription_create', subscription: sub, metadata, periodStart: nov.start, periodEnd: nov.end }));
    await ok(p.deliver(first));
    await p.settled();
    expect(await balance('u-sub')).toMatchObject({ total: 150n, subscription: 150n });
    await t.client.worker.consume({ idempotencyKey: 'sub-use-1', userId: 'u-sub', credits: 40n });
    // The December invoice, once the ledger's clock is past the boundary, and delivered twice.
    ledgerClock.set('2026-12-01T00:00:00.001Z');
    const second = event('invoice.paid', invoice({ amountPaid: 7999, billingReason: 'subscription_cycle', subscription: sub, metadata, periodStart: dec.start, periodEnd: dec.end }));
    await ok(p.deliver(second));
    await ok(p.deliver(second));
    await p.settled();
    const b = await balance('u-sub');
    expect(b).toMatchObject({ total: 150n, subscription: 150n });
    expect(b.lots).toHaveLength(1);
    expect(b.lots[0]!.expiresAt).toEqual(new Date(dec.end * 1000));
    const renewal = await t.pool.query(`SELECT result->>'expired_credits' AS expired FROM entries WHERE idempotency_key = $1`, [`stripe:in:${String((second.data.object as { id: string }).id)}`]);
    expect(renewal.rows[0].expired).toBe('110');
    // An invoice that is not a subscription renewal grants nothing.
    const manual = event('invoice.paid', invoice({ amountPaid: 100, billingReason: 'manual', subscription: sub, metadata, periodStart: dec.start, periodEnd: dec.end }));
    await ok(p.deliver(manual));
    await p.settled();
    expect((await p.eventRow(manual.id)).status).toBe('IGNORED');
    ledgerClock.set('2026-11-15T12:00:00.000Z');
    await t.expectInvariants();
  });
});

describe('subscribing through the API', () => {
  it("Stripe's events after a subscription checkout grant the plan's credits for the invoice line's period", async () => {
    const token = await p.token('u-flow');
    const res = await fetch(p.url('/api/credits/subscribe'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ planId: 'pro-monthly' }),
    });
    expect(res.status).toBe(200);
    const { sessionId } = (await res.json()) as { sessionId: string };
    const done = p.stripeStandIn.complete(sessionId, { periodStart: new Date('2026-11-10T00:00:00.000Z') });
    expect(done.events.map((e) => e.type)).toEqual(['checkout.session.completed', 'invoice.paid']);
    expect(await p.stripeStandIn.deliver(p.webhookUrl, webhookSecret, done.events)).toEqual([200, 200]);
    await p.settled();
    expect((await p.eventRow(done.events[0]!.id)).status).toBe('IGNORED');
    expect((await p.eventRow(done.events[1]!.id)).status).toBe('APPLIED');
    const b = await balance('u-flow');
    expect(b).toMatchObject({ total: 150n, subscription: 150n });
    expect(b.lots[0]).toMatchObject({ expiresAt: new Date('2026-12-10T00:00:00.000Z'), costBasisMicros: 79_990_000n });
    await t.expectInvariants();
  });
});

describe('events that cannot apply', () => {
  it('an unknown package or missing metadata is parked, counted in /metrics; unknown types are recorded and ignored', async () => {
    const unknownPackage = event('checkout.session.completed', paidSession('u-park', 'no-such-pack', 100));
    const noUser = event('checkout.session.completed', checkoutSession({ amountTotal: 100, metadata: { package_id: 'studio-pack' }, paymentIntent: stripeId('pi'), paymentStatus: 'paid' }));
    const unknownType = event('customer.created', { id: 'cus_test_1', object: 'customer' });
    // Some objects have no id; such events are recorded too.
    const noObjectId = event('balance.available', { object: 'balance', available: [{ amount: 0, currency: 'usd' }], livemode: false });
    // A NUL byte (which jsonb cannot store) in a signed event: stored all the same, then parked.
    const nul = event('checkout.session.completed', paidSession('u-\u0000nul', 'studio-pack', 100));
    for (const e of [unknownPackage, noUser, unknownType, noObjectId]) await ok(p.deliver(e));
    // Delivered together with good events, so it shares their insert batch.
    const good = Array.from({ length: 5 }, () => event('checkout.session.completed', paidSession('u-nul-neighbour', 'starter-pack', 1999)));
    await Promise.all([nul, ...good].map((e) => ok(p.deliver(e))));
    await p.settled();
    expect(await p.eventRow(nul.id)).toMatchObject({ status: 'PARKED', last_error: 'metadata.user_id is not a valid user id' });
    for (const e of good) expect((await p.eventRow(e.id)).status).toBe('APPLIED');
    expect(await p.eventRow(noObjectId.id)).toMatchObject({ status: 'IGNORED' });
    await p.settled();
    expect(await p.eventRow(unknownPackage.id)).toMatchObject({ status: 'PARKED', last_error: expect.stringMatching(/no-such-pack/) });
    expect(await p.eventRow(noUser.id)).toMatchObject({ status: 'PARKED', last_error: expect.stringMatching(/metadata.user_id/) });
    expect(await p.eventRow(unknownType.id)).toMatchObject({ status: 'IGNORED', attempts: 0 });
    const metrics = await (await fetch(p.url('/metrics'))).text();
    expect(metrics).toMatch(/payments_webhooks_parked_total\{type="checkout.session.completed"\} 3/);
    expect(metrics).toMatch(/payments_inbox_parked 3/);
    expect(metrics).toMatch(/payments_webhooks_received_total\{type="customer.created",outcome="stored"\} 1/);
    expect(metrics).toMatch(/payments_ledger_call_seconds_count\{method="purchase",code="OK"\} \d+/);
    expect(metrics).toMatch(/payments_inbox_lag_seconds 0/);
    await t.expectInvariants();
  });
});
