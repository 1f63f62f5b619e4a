import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../testing/browser.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { startPaymentsTest, type PaymentsTest } from './testing/payments-harness.js';

// The seed's test steps in a real headless Chromium: /credits/purchase lists every package as
// available with an enabled Purchase button and no "Temporarily Unavailable"; a purchase
// redirects to Stripe Checkout (the stand-in); after Stripe's webhook the balance shows the
// credits. Screenshots are kept under .artifacts/payments/ (gitignored).

const artifacts = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.artifacts/payments');
let t: TestLedger;
let p: PaymentsTest;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(artifacts, { recursive: true });
  t = await startTestLedger();
  const payments = t.options.credentials.find((c) => c.role === 'payments')!;
  p = await startPaymentsTest({ databaseUrl: t.db.url, ledgerAddr: t.address, ledgerToken: payments.token });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await p?.close();
  await t?.close();
});

describe('/credits/purchase in Chromium', () => {
  it('all packages available; Purchase goes to Checkout; after the webhook the balance shows the credits', async () => {
    const context = await browser.newContext();
    await context.addCookies([{ name: 'access_token', value: await p.token('page-user'), url: p.url('/') }]);
    const page = await context.newPage();
    await page.goto(p.url('/credits/purchase'));

    // 1–3: every package is on sale, with an enabled Purchase button; nothing is unavailable.
    const packages = page.locator('li.package');
    expect(await packages.count()).toBe(4);
    for (let i = 0; i < 4; i += 1) {
      await expect.poll(() => packages.nth(i).locator('.status').textContent()).toBe('Available');
      expect(await packages.nth(i).locator('button.buy').isEnabled()).toBe(true);
    }
    expect(await page.locator('body').textContent()).not.toMatch(/Temporarily Unavailable/i);
    const studio = page.getByTestId('package-studio-pack');
    expect(await studio.locator('h3').textContent()).toBe('Studio Pack');
    expect(await studio.getByTestId('credits').textContent()).toBe('500');
    expect(await studio.locator('.price').textContent()).toBe('$299.99 ($0.60 per credit)');
    // Lootboxes show a running countdown to the end or the start of their window.
    await expect.poll(() => page.getByTestId('lootbox-weekend-flash-sale').locator('.countdown').textContent()).toMatch(/^(On sale, ends in|Opens in) (\d+d )?\d\d:\d\d:\d\d$/);
    expect(await page.getByTestId('balance-total').textContent()).toBe('0');
    await page.screenshot({ path: path.join(artifacts, '1-purchase-page.png'), fullPage: true });

    // 4: a purchase redirects to Stripe Checkout.
    await studio.locator('button.buy').click();
    await page.waitForURL(/\/c\/pay\/cs_test_/);
    const sessionId = (await page.getByTestId('session-id').textContent())!;
    expect(await page.getByTestId('amount').textContent()).toBe('299.99 USD');
    await page.screenshot({ path: path.join(artifacts, '2-checkout.png') });

    // Stripe completes the payment and sends its webhook.
    const completed = p.stripeStandIn.complete(sessionId);
    expect(await p.stripeStandIn.deliver(p.webhookUrl, 'whsec_test_payments_0123456789abcdef', completed.events)).toEqual([200]);
    await p.settled();

    // 5: back on the page, the credits are there.
    await page.goto(p.url('/credits/purchase?checkout=success'));
    expect(await page.getByTestId('balance-total').textContent()).toBe('500');
    expect(await page.getByTestId('bucket-purchased').locator('span').textContent()).toBe('500');
    expect(await page.locator('#notice').textContent()).toMatch(/Thank you/);
    await page.screenshot({ path: path.join(artifacts, '3-after-webhook.png'), fullPage: true });
    await context.close();
    await t.expectInvariants();
  });

  it('without a session the page still lists everything and asks to sign in on Purchase', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(p.url('/credits/purchase'));
    expect(await page.locator('#balance').textContent()).toMatch(/Sign in/);
    await page.getByTestId('package-starter-pack').locator('button.buy').click();
    await expect.poll(() => page.locator('#message').textContent()).toBe('Please sign in to purchase.');
    expect(page.url()).toBe(p.url('/credits/purchase'));
    await page.screenshot({ path: path.join(artifacts, '4-signed-out.png') });
    await context.close();
  });
});
