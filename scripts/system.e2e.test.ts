import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLedgerClient, EntryKind } from '../services/ledger/client/index.js';
import { testCredentials } from '../services/ledger/testing/ledger-harness.js';
import { createTestRoles, type TestRoles } from '../services/ledger/testing/ledger-roles.js';
import { createTestDatabase, type TestDatabase } from '../services/testing/test-db.js';
import { Redis } from 'ioredis';
import { createEnhancementQueue, createQueueEvents, runEnhancement } from '../services/worker/producer.js';
import { startSystem, type RunningSystem } from './testing/npm-start.js';

// The whole product as `npm start` runs it, driven through a real browser as a person would use
// it: sign in, open /credits/purchase, every package on sale, buy the Studio Pack, pay on the
// local checkout (which delivers Stripe's signed webhooks), and see the credits. Screenshots are
// kept under .artifacts/system/.

const artifacts = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../.artifacts/system');

describe('the whole product through a browser', () => {
  let db: TestDatabase;
  let roles: TestRoles;
  let dataDir: string;
  let system: RunningSystem | null = null;
  let browser: Browser;
  const credentials = testCredentials();
  beforeAll(async () => {
    mkdirSync(artifacts, { recursive: true });
    db = await createTestDatabase();
    roles = await createTestRoles(db.url);
    dataDir = await mkdtemp(path.join(tmpdir(), 'system-e2e-'));
    system = await startSystem({
      DATABASE_URL: roles.urlAs(roles.app, db.url),
      DATABASE_MIGRATION_URL: roles.urlAs(roles.owner, db.url),
      PAYMENTS_DATABASE_URL: db.url,
      PAYMENTS_HTTP_ADDR: '127.0.0.1:0',
      PAYMENTS_APPLY_PERIOD_MS: '100',
      WAVESPEED_SIM_LATENCY_MS: '200',
      LEDGER_CREDENTIALS: JSON.stringify(credentials),
      LEDGER_GRPC_ADDR: '127.0.0.1:0',
      LEDGER_METRICS_ADDR: '127.0.0.1:0',
      // The machine's Redis, under a key prefix of this run's own.
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      WORKER_QUEUE_PREFIX: `test-${process.pid}-${Date.now()}`,
      WORKER_METRICS_ADDR: '127.0.0.1:0',
      DATA_DIR: dataDir,
    });
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    if (system) {
      system.child.kill('SIGTERM');
      await Promise.race([system.exited, new Promise((r) => setTimeout(r, 15_000))]);
      system.kill();
    }
    await db?.drop();
    await roles?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('sign in, every package available, buy the Studio Pack, pay, see 500 credits', async () => {
    const paymentsUrl = String(system!.ready.payments);
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
    const auditor = createLedgerClient(String(system!.ready.ledger), credentials.find((c) => c.role === 'auditor')!.token);
    const { entries } = await auditor.listEntries({ userId: 'buyer-1' });
    auditor.close();
    expect(entries.map((e) => e.kind)).toEqual([EntryKind.ENTRY_KIND_PURCHASE]);
    expect(entries[0]!.transfers.some((t) => t.amount === 299_990_000n && t.unit === 'USD')).toBe(true);

    // An enhancement, as the product's backend asks for one: a BullMQ job the worker takes.
    const redis = new Redis(String(system!.ready.redis), { maxRetriesPerRequest: null });
    const queue = createEnhancementQueue(redis, String(system!.ready.queuePrefix));
    const events = createQueueEvents(redis.duplicate(), String(system!.ready.queuePrefix));
    try {
      const outcome = await runEnhancement(
        queue,
        events,
        { requestId: 'req-e2e-1', userId: 'buyer-1', model: 'wavespeed-ai/image-upscaler', input: { image: 'https://example.test/cat.png', target_resolution: '4k' } },
        60_000,
      );
      if (!outcome.ok) throw new Error(`enhancement failed: ${outcome.reason} ${outcome.message}`);
      expect(outcome.outputs.length).toBeGreaterThan(0);
      // The balance drops by the model's price, on the page too.
      await page.reload();
      expect(await page.getByTestId('balance-total').textContent()).toBe(String(500n - outcome.creditsCharged));
      await page.screenshot({ path: path.join(artifacts, '4-after-enhancement.png'), fullPage: true });
      const auditor2 = createLedgerClient(String(system!.ready.ledger), credentials.find((c) => c.role === 'auditor')!.token);
      const capture = (await auditor2.listEntries({ userId: 'buyer-1' })).entries.at(-1)!;
      auditor2.close();
      expect(capture.kind).toBe(EntryKind.ENTRY_KIND_CAPTURE);
      expect(capture.metadata['upstream.request_id']).toBe(outcome.predictionId);
    } finally {
      await queue.close();
      await events.close();
      await redis.quit();
    }
  });
});
