import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../services/testing/browser.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedgerClient, EntryKind } from '../services/ledger/client/index.js';
import { openEnhancementProducer } from '../services/worker/producer.js';
import { startTestSystem, type RunningSystem, type TestSystem } from './testing/npm-start.js';

// The whole product as `npm start` runs it, driven through a real browser as a person would use
// it: sign in, open /credits/purchase, every package on sale, buy the Studio Pack, pay on the
// local checkout (which delivers Stripe's signed webhooks), and see the credits. Screenshots are
// kept under .artifacts/system/.

const artifacts = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../.artifacts/system');

describe('the whole product through a browser', () => {
  let t: TestSystem;
  let system: RunningSystem;
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    t = await startTestSystem('system-e2e');
    system = t.system;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('sign in, every package available, buy the Studio Pack, pay, see 500 credits', async () => {
    const paymentsUrl = String(system.ready.payments);
    const page = await browser.newPage();
    await page.goto(`${paymentsUrl}/dev/sign-in?user_id=buyer-1`);
    await page.waitForURL(/\/credits\/purchase/);
    const packages = page.locator('li.package');
    expect(await packages.count()).toBeGreaterThanOrEqual(4);
    for (let i = 0; i < (await packages.count()); i += 1) {
      expect(await packages.nth(i).locator('.status').textContent()).toBe('Available');
      expect(await packages.nth(i).locator('button.buy').isEnabled()).toBe(true);
    }
    expect(await page.locator('body').textContent()).not.toMatch(/Temporarily Unavailable/i);
    await page.screenshot({ path: path.join(artifacts, '1-purchase-page.png'), fullPage: true });

    await page.getByTestId('package-studio-pack').locator('button.buy').click();
    await page.waitForURL(/\/c\/pay\/cs_/);
    expect(await page.getByTestId('amount').textContent()).toBe('299.99 USD');
    await page.screenshot({ path: path.join(artifacts, '2-local-checkout.png') });
    await page.getByTestId('pay').click();
    await page.waitForURL(/\/credits\/purchase/);
    // The webhook is stored at once and applied by the inbox within its period.
    await expect
      .poll(
        async () => {
          await page.reload();
          return page.getByTestId('balance-total').textContent();
        },
        { timeout: 15_000, interval: 300 },
      )
      .toBe('500');
    expect(await page.getByTestId('bucket-purchased').locator('span').textContent()).toBe('500');
    await page.screenshot({ path: path.join(artifacts, '3-credits-arrived.png'), fullPage: true });

    // The journal agrees: one PURCHASE entry for the buyer, paid $299.99.
    const auditor = createLedgerClient(String(system.ready.ledger), t.tokenOf('auditor'));
    const { entries } = await auditor.listEntries({ userId: 'buyer-1' });
    auditor.close();
    expect(entries.map((e) => e.kind)).toEqual([EntryKind.ENTRY_KIND_PURCHASE]);
    expect(entries[0]!.transfers.some((t) => t.amount === 299_990_000n && t.unit === 'USD')).toBe(true);

    // An enhancement, as the product's backend asks for one: a BullMQ job the worker takes.
    const producer = await openEnhancementProducer(String(system.ready.redis), String(system.ready.queuePrefix));
    try {
      const outcome = await producer.run(
        { requestId: 'req-e2e-1', userId: 'buyer-1', model: 'wavespeed-ai/image-upscaler', input: { image: 'https://example.test/cat.png', target_resolution: '4k' } },
        60_000,
      );
      if (!outcome.ok) throw new Error(`enhancement failed: ${outcome.reason} ${outcome.message}`);
      expect(outcome.outputs.length).toBeGreaterThan(0);
      // The balance drops by the model's price, on the page too.
      await page.reload();
      expect(await page.getByTestId('balance-total').textContent()).toBe(String(500n - outcome.creditsCharged));
      await page.screenshot({ path: path.join(artifacts, '4-after-enhancement.png'), fullPage: true });
      const auditor2 = createLedgerClient(String(system.ready.ledger), t.tokenOf('auditor'));
      const capture = (await auditor2.listEntries({ userId: 'buyer-1' })).entries.at(-1)!;
      auditor2.close();
      expect(capture.kind).toBe(EntryKind.ENTRY_KIND_CAPTURE);
      expect(capture.metadata['upstream.request_id']).toBe(outcome.predictionId);
    } finally {
      await producer.close();
    }
  });
});
