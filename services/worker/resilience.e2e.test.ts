import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntryKind } from '../ledger/client/index.js';
import { startChildLedger, type ChildLedger } from '../ledger/testing/child-ledger.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import { loadModelTable } from './models.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { startWorkerHarness, testPrefix, type WorkerHarness, grantedUser, enhancementRequest } from './testing/worker-harness.js';

// The slow and the unavailable: a hold kept alive under a slow upstream, a ledger process that
// goes away and comes back, or stays away longer than every attempt.

const model = 'wavespeed-ai/image-upscaler';
const price = loadModelTable().get(model)!.creditsPrice;

let ledger: TestLedger; // in this process: grants, balances, invariants
let child: ChildLedger; // what the worker talks to; killed and restarted
let sim: SimulatorChild;
const harnesses: WorkerHarness[] = [];

const workerToken = () => ledger.options.credentials.find((c) => c.role === 'worker')!.token;

const userWith = (credits: bigint) => grantedUser(ledger.client.admin, credits);

const request = enhancementRequest;

async function harness(name: string, options: Partial<Parameters<typeof startWorkerHarness>[0]> = {}) {
  const h = await startWorkerHarness({
    prefix: testPrefix(name),
    ledgerAddress: child.address,
    ledgerToken: workerToken(),
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
    ...options,
  });
  harnesses.push(h);
  return h;
}

const available = async (userId: string) => (await ledger.client.admin.getBalance({ userId })).available;
const entryKinds = async (userId: string) => (await ledger.client.admin.listEntries({ userId, pageSize: 500 })).entries.map((e) => e.kind);

beforeAll(async () => {
  [ledger, sim] = await Promise.all([startTestLedger({ clock: systemClock, sweeper: true }), startSimulatorChild({ latencyMs: 300 })]);
  child = await startChildLedger({ databaseUrl: ledger.db.url, credentials: ledger.options.credentials, env: { LEDGER_HOLD_SWEEP_PERIOD_MS: '50' } });
});

afterAll(async () => {
  for (const h of harnesses) await h.close();
  await child?.kill();
  await sim?.stop();
  await ledger?.close();
});

describe('worker resilience', () => {
  it('keeps a short hold alive (ExtendHold) while the upstream is slower than its TTL', async () => {
    const w = await harness('lease', { timings: { holdTtlMs: 3_000 } });
    const userId = await userWith(10n);
    await sim.faults([{ op: 'submit', model, action: { kind: 'latency', ms: 6_000 } }]);
    const r = request(userId);
    await w.enqueue(r);
    const job = await w.finished(r.requestId, 30_000);
    expect(job.failedReason).toBeUndefined();
    expect(await w.metric('enhancement_holds_extended_total')).toBeGreaterThanOrEqual(3);
    const kinds = await entryKinds(userId);
    expect(kinds).toContain(EntryKind.ENTRY_KIND_EXTEND_HOLD);
    expect(kinds).toContain(EntryKind.ENTRY_KIND_CAPTURE);
    expect(kinds).not.toContain(EntryKind.ENTRY_KIND_HOLD_TIMEOUT);
    expect(await available(userId)).toBe(10n - price);
    await ledger.expectInvariants();
  });

  it('rides out a ledger that is down at Reserve and again at Capture: one charge', async () => {
    const w = await harness('outage', { timings: { ledgerRetryMs: 30_000 } });
    const userId = await userWith(10n);
    await sim.configure({ latencyMs: 1_500 });
    try {
      await child.kill();
      const r = request(userId);
      await w.enqueue(r);
      await new Promise((res) => setTimeout(res, 1_500));
      expect((await w.queue.getJob(r.requestId))!.data.state).toBeUndefined(); // still waiting to reserve
      child = await startChildLedger({ databaseUrl: ledger.db.url, credentials: ledger.options.credentials, port: child.port });
      // Down again once the prediction is submitted, so the capture meets the outage.
      const deadline = Date.now() + 20_000;
      while ((await w.queue.getJob(r.requestId))!.data.state?.phase !== 'submitted') {
        if (Date.now() > deadline) throw new Error('never submitted');
        await new Promise((res) => setTimeout(res, 20));
      }
      await child.kill();
      await new Promise((res) => setTimeout(res, 2_500)); // the prediction completes meanwhile
      child = await startChildLedger({ databaseUrl: ledger.db.url, credentials: ledger.options.credentials, port: child.port });
      const job = await w.finished(r.requestId, 40_000);
      expect(job.failedReason).toBeUndefined();
      expect(await w.metric('enhancement_ledger_calls_total', { result: 'UNAVAILABLE' })).toBeGreaterThan(0);
      expect((await entryKinds(userId)).filter((k) => k === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
      expect(await available(userId)).toBe(10n - price);
      expect((await sim.tasks()).filter((t) => t.input.image === r.input.image)).toHaveLength(1);
    } finally {
      await sim.configure({ latencyMs: 300 });
    }
    await ledger.expectInvariants();
  });

  it('a ledger down for longer than every attempt: the job fails uncharged and the submitted prediction is recorded as owed', async () => {
    const w = await harness('outage-long', { timings: { ledgerRetryMs: 500, holdTtlMs: 3_000 } });
    const userId = await userWith(10n);
    await sim.configure({ latencyMs: 1_000 });
    try {
      const r = request(userId);
      await w.queue.add('enhance', r, { jobId: r.requestId, attempts: 2, backoff: { type: 'fixed', delay: 200 } });
      const deadline = Date.now() + 20_000;
      while ((await w.queue.getJob(r.requestId))!.data.state?.phase !== 'submitted') {
        if (Date.now() > deadline) throw new Error('never submitted');
        await new Promise((res) => setTimeout(res, 20));
      }
      await child.kill();
      const job = await w.finished(r.requestId, 30_000);
      expect(job.failedReason).toMatch(/UNAVAILABLE/);
      expect(job.attemptsMade).toBe(2);
      const predictionId = (job.data.state as { predictionId: string }).predictionId;
      expect((await w.claims.orphans())[predictionId]).toMatchObject({ requestId: r.requestId, model });
      expect(await w.metric('enhancement_jobs_total', { outcome: 'RETRIES_EXHAUSTED' })).toBe(1);
    } finally {
      await sim.configure({ latencyMs: 300 });
      child = await startChildLedger({ databaseUrl: ledger.db.url, credentials: ledger.options.credentials, port: child.port });
    }
    // Nobody captures or releases: the hold lapses by itself and the credits come back.
    const deadline = Date.now() + 15_000;
    while ((await available(userId)) !== 10n) {
      if (Date.now() > deadline) throw new Error('hold never lapsed');
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(await entryKinds(userId)).not.toContain(EntryKind.ENTRY_KIND_CAPTURE);
    await ledger.expectInvariants();
  });
});
