import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind } from '../ledger/client/index.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import { failureReasonOf, type EnhancementRequest } from './job-types.js';
import { loadModelTable } from './models.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { startWorkerHarness, testPrefix, type WorkerHarness } from './testing/worker-harness.js';

// Many jobs for one user racing for the same credits, all in flight at once.

const model = 'wavespeed-ai/image-upscaler';
const price = loadModelTable().get(model)!.creditsPrice;

let ledger: TestLedger;
let sim: SimulatorChild;
let w: WorkerHarness;

beforeAll(async () => {
  [ledger, sim] = await Promise.all([startTestLedger({ clock: systemClock, sweeper: true }), startSimulatorChild({ latencyMs: 500 })]);
  w = await startWorkerHarness({
    prefix: testPrefix('concurrency'),
    ledgerAddress: ledger.address,
    ledgerToken: ledger.options.credentials.find((c) => c.role === 'worker')!.token,
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
    concurrency: 200,
  });
});

afterAll(async () => {
  await w?.close();
  await sim?.stop();
  await ledger?.close();
});

describe('one user, many jobs', () => {
  it('200 jobs holding credits for 100: exactly 100 charged, 100 INSUFFICIENT_CREDITS with no upstream call', async () => {
    const userId = 'u-racer';
    await ledger.client.admin.grant({ idempotencyKey: 'grant-racer', userId, credits: 100n * price, bucket: Bucket.BUCKET_PURCHASED });
    const before = await sim.stats();
    const requests: EnhancementRequest[] = Array.from({ length: 200 }, (_, i) => ({
      requestId: `race-${i}`,
      userId,
      model,
      input: { image: `https://img.example/race-${i}.png`, target_resolution: '2k' },
    }));
    await w.queue.addBulk(requests.map((r) => ({ name: 'enhance', data: r, opts: { jobId: r.requestId } })));
    const outcomes = { completed: 0, insufficient: 0, other: [] as string[] };
    const charged = new Set<string>();
    for (const r of requests) {
      const job = await w.finished(r.requestId, 60_000);
      if (job.failedReason === undefined) {
        outcomes.completed += 1;
        charged.add(r.input.image as string);
      } else if (failureReasonOf(job.failedReason) === 'INSUFFICIENT_CREDITS') outcomes.insufficient += 1;
      else outcomes.other.push(job.failedReason);
    }
    expect(outcomes).toEqual({ completed: 100, insufficient: 100, other: [] });
    const after = await sim.stats();
    expect(after.submits - before.submits).toBe(100);
    const tasks = (await sim.tasks()).filter((t) => (t.input.image as string).includes('/race-'));
    expect(tasks).toHaveLength(100);
    // The upstream was called exactly for the charged jobs.
    expect(new Set(tasks.map((t) => t.input.image as string))).toEqual(charged);
    const balance = await ledger.client.admin.getBalance({ userId });
    expect(balance).toMatchObject({ available: 0n, held: 0n, balance: 0n });
    const entries = (await ledger.client.admin.listEntries({ userId, pageSize: 500 })).entries;
    expect(entries.filter((e) => e.kind === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(100);
    expect(entries.filter((e) => e.kind === EntryKind.ENTRY_KIND_RESERVE)).toHaveLength(100);
    await ledger.expectInvariants();
  });
});
