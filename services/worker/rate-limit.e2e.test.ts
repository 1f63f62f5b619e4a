import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import { loadModelTable } from './models.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { startWorkerHarness, testPrefix, type WorkerHarness, grantedUser, enhancementRequest } from './testing/worker-harness.js';

// The account tier's rate limit: set, the worker earns no 429s from a bucket of that size; unset,
// the same burst does (so the first test can fail).

const model = 'wavespeed-ai/image-upscaler';
const price = loadModelTable().get(model)!.creditsPrice;

let ledger: TestLedger;
let sim: SimulatorChild;
const harnesses: WorkerHarness[] = [];


const userWith = (credits: bigint) => grantedUser(ledger.client.admin, credits);

const request = enhancementRequest;

async function harness(name: string, options: Partial<Parameters<typeof startWorkerHarness>[0]> = {}) {
  const h = await startWorkerHarness({
    prefix: testPrefix(name),
    ledgerAddress: ledger.address,
    ledgerToken: ledger.options.credentials.find((c) => c.role === 'worker')!.token,
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
    ...options,
  });
  harnesses.push(h);
  return h;
}

const available = async (userId: string) => (await ledger.client.admin.getBalance({ userId })).available;

beforeAll(async () => {
  [ledger, sim] = await Promise.all([startTestLedger({ clock: systemClock, sweeper: true }), startSimulatorChild({ latencyMs: 300 })]);
});

afterAll(async () => {
  for (const h of harnesses) await h.close();
  await sim?.stop();
  await ledger?.close();
});

describe('Wavespeed rate limit', () => {
  /**
   * 40 jobs at once against an account that allows 600 submits a minute with a burst of 10,
   * through a worker with `ratePerMin` (null: no limit). Every job succeeds and is charged once
   * either way; returns how many 429s the simulator answered meanwhile.
   */
  async function burst(name: string, ratePerMin: number | null): Promise<number> {
    await sim.configure({ ratePerMin: 600, burst: 10 });
    try {
      const w = await harness(name, { ratePerMin, concurrency: 50 });
      const userId = await userWith(1_000n);
      const before = await sim.stats();
      const requests = Array.from({ length: 40 }, () => request(userId));
      await w.queue.addBulk(requests.map((r) => ({ name: 'enhance', data: r, opts: { jobId: r.requestId } })));
      for (const r of requests) expect((await w.finished(r.requestId, 30_000)).failedReason).toBeUndefined();
      const after = await sim.stats();
      expect(after.tasksCreated - before.tasksCreated).toBe(40);
      expect(await available(userId)).toBe(1_000n - 40n * price);
      return after.rateLimited - before.rateLimited;
    } finally {
      await sim.configure({ ratePerMin: null });
    }
  }

  it('a rate limit set to the account tier keeps the worker from earning 429s', async () => {
    expect(await burst('rate', 600)).toBe(0);
    await ledger.expectInvariants();
  });

  it('without that limit the same burst earns 429s (the limit above is what prevented them), and still charges each job once', async () => {
    expect(await burst('norate', null)).toBeGreaterThan(0);
    await ledger.expectInvariants();
  });
});
