import { createHash } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../lib/clock.js';
import { Bucket } from '../ledger/client/index.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { startPaymentsTest, type PaymentsTest } from './testing/payments-harness.js';

// The credits API and operations routes over real HTTP, with a manual clock for the lootbox
// windows (SALE_TIME_ZONE=UTC here), a real ledger and the Stripe stand-in.

const clock = new ManualClock('2026-11-27T17:59:59.999Z'); // a Friday, 1 ms before the weekend sale
let t: TestLedger;
let p: PaymentsTest;

beforeAll(async () => {
  t = await startTestLedger();
  const payments = t.options.credentials.find((c) => c.role === 'payments')!;
  p = await startPaymentsTest({ databaseUrl: t.db.url, ledgerAddr: t.address, ledgerToken: payments.token, clock });
});
afterAll(async () => {
  await p?.close();
  await t?.close();
});

const call = async (method: string, path: string, options: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) => {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(p.url(path), { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let json: Record<string, any> = {};
  try {
    json = JSON.parse(text);
  } catch {
    json = { text };
  }
  return { status: res.status, json };
};
const journalHead = async () => (await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq;

describe('GET /api/credits/purchase', () => {
  it('keeps the old contract: every package available, platformCapacity; lootboxes with their windows', async () => {
    const { status, json } = await call('GET', '/api/credits/purchase');
    expect(status).toBe(200);
    expect(json.packages.length).toBeGreaterThanOrEqual(4);
    for (const pkg of json.packages) expect(pkg.available).toBe(true);
    expect(json.packages.find((x: { id: string }) => x.id === 'studio-pack')).toEqual({
      id: 'studio-pack',
      name: 'Studio Pack',
      credits: 500,
      priceCents: 29999,
      price: '299.99',
      pricePerCredit: '0.60',
      available: true,
    });
    expect(json.platformCapacity).toEqual({ model: 'wavespeed_pay_per_use', allPackagesAvailable: true, note: 'All credit packages always available (pay-per-use billing)' });
    const weekend = json.lootboxes.find((x: { id: string }) => x.id === 'weekend-flash-sale');
    expect(weekend).toMatchObject({ available: false, window: { opensAt: '2026-11-27T18:00:00.000Z', closesAt: '2026-11-29T23:00:00.000Z' } });
    expect(weekend.fairness.serverSeedHash).toMatch(/^[0-9a-f]{64}$/);
    expect(json.lootboxes.find((x: { id: string }) => x.id === 'mid-month-mega-deal')).toMatchObject({ available: false, window: { opensAt: '2026-12-15T00:00:00.000Z' } });
    expect(json.plans[0]).toMatchObject({ id: 'pro-monthly', monthlyCredits: 150 });
  });
});

describe('POST /api/credits/purchase and /subscribe', () => {
  it('a package creates a Checkout Session with the metadata contract and answers {sessionId, url}', async () => {
    const token = await p.token('user-1');
    const { status, json } = await call('POST', '/api/credits/purchase', { token, body: { packageId: 'studio-pack' } });
    expect(status).toBe(200);
    expect(json.sessionId).toMatch(/^cs_test_/);
    expect(json.url).toBe(`${p.stripeStandIn.url}/c/pay/${json.sessionId}`);
    const request = p.stripeStandIn.requests.at(-1)!;
    expect(request).toMatchObject({
      method: 'POST',
      path: '/v1/checkout/sessions',
      form: {
        mode: 'payment',
        client_reference_id: 'user-1',
        metadata: { user_id: 'user-1', package_id: 'studio-pack' },
        line_items: [{ quantity: '1', price_data: { currency: 'usd', unit_amount: '29999', product_data: { name: 'Studio Pack' } } }],
      },
    });
    expect(String(request.form.success_url)).toContain('/credits/purchase?checkout=success');
    expect((await fetch(json.url)).status).toBe(200);
  });

  it('a lootbox sells only inside its window, edges 1 ms either side, with the window on the session', async () => {
    // Tokens are minted at the (moving) clock's time, so they are valid whenever it is set.
    const buy = async () => call('POST', '/api/credits/purchase', { token: await p.token('user-box'), body: { packageId: 'weekend-flash-sale' } });
    clock.set('2026-11-27T17:59:59.999Z');
    const early = await buy();
    expect(early.status).toBe(409);
    expect(early.json.message).toMatch(/Weekend Flash Sale is on sale only inside its window; the next one opens at 2026-11-27T18:00:00.000Z/);
    clock.set('2026-11-27T18:00:00.000Z');
    expect((await buy()).status).toBe(200);
    expect(p.stripeStandIn.requests.at(-1)!.form.metadata).toEqual({ user_id: 'user-box', package_id: 'weekend-flash-sale', lootbox_window_opens_at: '2026-11-27T18:00:00.000Z' });
    clock.set('2026-11-29T22:59:59.999Z');
    expect((await buy()).status).toBe(200);
    expect((await call('GET', '/api/credits/purchase')).json.lootboxes[0].available).toBe(true);
    clock.set('2026-11-29T23:00:00.000Z');
    expect((await buy()).status).toBe(409);
    // Mid-Month Mega Deal: the 15th 00:00 to the end of the 17th.
    const mega = async () => call('POST', '/api/credits/purchase', { token: await p.token('user-box'), body: { packageId: 'mid-month-mega-deal' } });
    clock.set('2026-12-14T23:59:59.999Z');
    expect((await mega()).status).toBe(409);
    clock.set('2026-12-15T00:00:00.000Z');
    expect((await mega()).status).toBe(200);
    clock.set('2026-12-17T23:59:59.999Z');
    expect((await mega()).status).toBe(200);
    clock.set('2026-12-18T00:00:00.000Z');
    expect((await mega()).status).toBe(409);
    clock.set('2026-11-27T17:59:59.999Z');
  });

  it('a plan creates a subscription session with subscription_data.metadata', async () => {
    const token = await p.token('user-sub');
    const { status, json } = await call('POST', '/api/credits/subscribe', { token, body: { planId: 'pro-monthly' } });
    expect(status).toBe(200);
    expect(json.sessionId).toMatch(/^cs_test_/);
    expect(p.stripeStandIn.requests.at(-1)!.form).toMatchObject({
      mode: 'subscription',
      subscription_data: { metadata: { user_id: 'user-sub', plan_id: 'pro-monthly' } },
      line_items: [{ price_data: { recurring: { interval: 'month' }, unit_amount: '7999' } }],
    });
  });

  it('bad input gets a clear 4xx naming the problem and writes nothing', async () => {
    const token = await p.token('user-bad');
    const sessionsBefore = p.stripeStandIn.sessions.size;
    const headBefore = await journalHead();
    const expired = await p.token('user-bad', { now: new Date(clock.now().getTime() - 7_200_000), expiresInSeconds: 3600 });
    const forged = await p.token('user-bad', { secret: 'another-secret-of-at-least-32-characters!' });
    const noSub = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(clock.now().getTime() / 1000) + 60).sign(new TextEncoder().encode('test-jwt-secret-for-payments-0123456789'));
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"user-bad"}').toString('base64url')}.`;
    const cases: [string, Promise<{ status: number; json: Record<string, any> }>, number, RegExp][] = [
      ['no token', call('POST', '/api/credits/purchase', { body: { packageId: 'studio-pack' } }), 401, /authorization/],
      ['not bearer', call('POST', '/api/credits/purchase', { body: { packageId: 'studio-pack' }, headers: { authorization: 'Basic abc' } }), 401, /Bearer/],
      ['expired token', call('POST', '/api/credits/purchase', { token: expired, body: { packageId: 'studio-pack' } }), 401, /expired/],
      ['forged token', call('POST', '/api/credits/purchase', { token: forged, body: { packageId: 'studio-pack' } }), 401, /signature/],
      ['alg none', call('POST', '/api/credits/purchase', { token: unsigned, body: { packageId: 'studio-pack' } }), 401, /algorithm/],
      ['no sub', call('POST', '/api/credits/purchase', { token: noSub, body: { packageId: 'studio-pack' } }), 401, /sub/],
      ['garbage token', call('GET', '/api/credits/balance', { token: 'abc.def.ghi' }), 401, /access token/],
      ['unknown package', call('POST', '/api/credits/purchase', { token, body: { packageId: 'no-such-pack' } }), 404, /packageId: no package or lootbox "no-such-pack"/],
      ['unknown plan', call('POST', '/api/credits/subscribe', { token, body: { planId: 'gold' } }), 404, /planId/],
      ['a plan bought as a package', call('POST', '/api/credits/purchase', { token, body: { packageId: 'pro-monthly' } }), 404, /packageId/],
      ['number for packageId', call('POST', '/api/credits/purchase', { token, body: { packageId: 5 } }), 400, /packageId/],
      ['NUL byte', call('POST', '/api/credits/purchase', { token, body: { packageId: 'studio\u0000pack' } }), 400, /packageId/],
      ['missing packageId', call('POST', '/api/credits/purchase', { token, body: {} }), 400, /packageId/],
      ['extra field', call('POST', '/api/credits/purchase', { token, body: { packageId: 'studio-pack', credits: 1_000_000 } }), 400, /additional properties/],
      ['array body', call('POST', '/api/credits/purchase', { token, body: ['studio-pack'] }), 400, /object/],
      ['not JSON', call('POST', '/api/credits/purchase', { token, raw: '{packageId:', headers: { 'content-type': 'application/json' } }), 400, /JSON/],
      ['wrong content type', call('POST', '/api/credits/purchase', { token, raw: 'packageId=studio-pack', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, /content-type|Unsupported/i],
      ['oversized body', call('POST', '/api/credits/purchase', { token, body: { packageId: 'x'.repeat(20_000) } }), 413, /too large/i],
      ['huge page size', call('GET', '/api/credits/history?pageSize=100000', { token }), 400, /pageSize/],
      ['zero page size', call('GET', '/api/credits/history?pageSize=0', { token }), 400, /pageSize/],
      ['non-integer page size', call('GET', '/api/credits/history?pageSize=1.5', { token }), 400, /pageSize/],
      ['forged page token', call('GET', '/api/credits/history?pageToken=AAAA', { token }), 400, /page_token/],
      ['unknown route', call('GET', '/api/credits/nothing', { token }), 404, /no route/],
    ];
    for (const [name, response, code, message] of cases) {
      const { status, json } = await response;
      expect({ name, status }).toEqual({ name, status: code });
      expect({ name, message: json.message }).toEqual({ name, message: expect.stringMatching(message) });
    }
    expect(p.stripeStandIn.sessions.size).toBe(sessionsBefore);
    expect(await journalHead()).toBe(headBefore);
    await t.expectInvariants();
  });

  it('a Stripe outage is a 502, not a crash', async () => {
    p.stripeStandIn.failNext(2);
    const { status, json } = await call('POST', '/api/credits/purchase', { token: await p.token('user-1'), body: { packageId: 'studio-pack' } });
    expect(status).toBe(502);
    expect(json.message).toMatch(/payment provider/);
  });
});

describe('balance and history', () => {
  it('answer for the token\'s user from the ledger, paginated', async () => {
    const token = await p.token('user-hist');
    expect((await call('GET', '/api/credits/balance', { token })).json).toMatchObject({ userId: 'user-hist', balance: 0, buckets: [{ bucket: 'subscription', balance: 0 }, { bucket: 'bonus' }, { bucket: 'purchased' }] });
    for (const [i, credits] of [10n, 20n, 30n].entries()) {
      await t.client.admin.grant({ idempotencyKey: `hist-${i}`, userId: 'user-hist', credits, bucket: Bucket.BUCKET_PURCHASED });
    }
    await t.client.worker.consume({ idempotencyKey: 'hist-use', userId: 'user-hist', credits: 5n });
    const b = await call('GET', '/api/credits/balance', { token });
    expect(b.json).toMatchObject({ balance: 55, available: 55, buckets: [{ bucket: 'subscription', balance: 0 }, { bucket: 'bonus', balance: 0 }, { bucket: 'purchased', balance: 55 }] });
    const page1 = await call('GET', '/api/credits/history?pageSize=3', { token });
    expect(page1.status, JSON.stringify(page1.json)).toBe(200);
    expect(page1.json.entries.map((e: { kind: string; credits: number }) => [e.kind, e.credits])).toEqual([
      ['GRANT', 10],
      ['GRANT', 20],
      ['GRANT', 30],
    ]);
    expect(page1.json.nextPageToken).toEqual(expect.any(String));
    const page2 = await call('GET', `/api/credits/history?pageSize=3&pageToken=${encodeURIComponent(page1.json.nextPageToken)}`, { token });
    expect(page2.json.entries.map((e: { kind: string; credits: number }) => [e.kind, e.credits])).toEqual([['CONSUME', -5]]);
    expect(page2.json.nextPageToken).toBeNull();
    // Another user's token sees only their own.
    expect((await call('GET', '/api/credits/history', { token: await p.token('user-other') })).json.entries).toEqual([]);
    await t.expectInvariants();
  });
});

describe('lootbox fairness endpoint', () => {
  it('publishes the commitment and reveals the seed only after the window closes', async () => {
    const path = '/api/credits/lootboxes/weekend-flash-sale/fairness?opensAt=2026-11-27T18:00:00.000Z';
    clock.set('2026-11-28T00:00:00.000Z');
    const during = await call('GET', path);
    expect(during.status).toBe(200);
    expect(during.json.serverSeed).toBeNull();
    clock.set('2026-11-29T23:00:00.000Z');
    const after = await call('GET', path);
    expect(after.json.serverSeedHash).toBe(during.json.serverSeedHash);
    expect(createHash('sha256').update(Buffer.from(after.json.serverSeed, 'hex')).digest('hex')).toBe(during.json.serverSeedHash);
    expect((await call('GET', '/api/credits/lootboxes/weekend-flash-sale/fairness?opensAt=2026-11-27T18:00:01.000Z')).status).toBe(404);
    expect((await call('GET', '/api/credits/lootboxes/weekend-flash-sale/fairness?opensAt=yesterday')).status).toBe(400);
    clock.set('2026-11-27T17:59:59.999Z');
  });
});

describe('operations', () => {
  it('healthz, readyz and metrics answer', async () => {
    expect(await call('GET', '/healthz')).toEqual({ status: 200, json: { status: 'ok' } });
    expect(await call('GET', '/readyz')).toEqual({ status: 200, json: { status: 'ready', database: 'ok', ledger: 'ok' } });
    const metrics = await fetch(p.url('/metrics'));
    expect(metrics.headers.get('content-type')).toMatch(/text\/plain/);
    expect(await metrics.text()).toMatch(/payments_inbox_pending 0/);
  });
});
