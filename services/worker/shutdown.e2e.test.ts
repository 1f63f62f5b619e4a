import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind } from '../ledger/client/index.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import type { EnhancementJobData } from './job-types.js';
import { loadModelTable } from './models.js';
import type { Child } from './testing/child-process.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { startWorkerChild } from './testing/worker-child.js';
import { startWorkerHarness, testPrefix, type WorkerHarness } from './testing/worker-harness.js';

// Real worker processes stopped with SIGTERM mid-job: drain within the grace, or hand back. Jobs are enqueued
// with BullMQ's own Queue (no helper of ours); the worker under test is `services/worker/main.ts`.

const model = 'wavespeed-ai/image-upscaler';
const price = loadModelTable().get(model)!.creditsPrice;

let ledger: TestLedger;
let sim: SimulatorChild;
let w: WorkerHarness; // queue, claims and Redis only: no worker in this process
const children: Child[] = [];

const uid = () => randomBytes(6).toString('hex');

async function startWorker(env: Record<string, string> = {}) {
  const child = await startWorkerChild({
    prefix: w.prefix,
    ledgerAddress: ledger.address,
    ledgerToken: ledger.options.credentials.find((c) => c.role === 'worker')!.token,
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
    env,
  });
  children.push(child);
  return child;
}

async function userWith(credits: bigint) {
  const userId = `u-${uid()}`;
  await ledger.client.admin.grant({ idempotencyKey: `grant-${uid()}`, userId, credits, bucket: Bucket.BUCKET_PURCHASED });
  return userId;
}

async function enqueue(userId: string): Promise<EnhancementJobData> {
  const requestId = `req-${uid()}`;
  const data = { requestId, userId, model, input: { image: `https://img.example/${requestId}.png`, target_resolution: '4k' } };
  await w.queue.add('enhance', data, { jobId: requestId, attempts: 3 });
  return data;
}

async function waitForPhase(requestId: string, phase: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await w.queue.getJob(requestId);
    if (job?.data.state?.phase === phase) return job;
    if (Date.now() > deadline) throw new Error(`job ${requestId} never reached ${phase} (at ${JSON.stringify(job?.data.state)})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const tasksFor = async (d: EnhancementJobData) => (await sim.tasks()).filter((t) => t.input.image === d.input.image);
const available = async (userId: string) => (await ledger.client.admin.getBalance({ userId })).available;
const entryKinds = async (userId: string) => (await ledger.client.admin.listEntries({ userId, pageSize: 500 })).entries.map((e) => e.kind);

beforeAll(async () => {
  [ledger, sim] = await Promise.all([
    startTestLedger({ clock: systemClock, sweeper: true }),
    startSimulatorChild({ latencyMs: 3_000 }),
  ]);
  w = await startWorkerHarness({
    prefix: testPrefix('shutdown'),
    ledgerAddress: ledger.address,
    ledgerToken: ledger.options.credentials.find((c) => c.role === 'worker')!.token,
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
    start: false,
  });
});

afterAll(async () => {
  await Promise.all(children.map((c) => c.kill()));
  await w?.close();
  await sim?.stop();
  await ledger?.close();
});

describe('worker shutdown', () => {
  it('SIGTERM with time to spare: the jobs in flight finish before the worker exits, and no new job starts', async () => {
    const userId = await userWith(100n);
    const worker = await startWorker({ WORKER_DRAIN_GRACE_MS: '15000' });
    const jobs = await Promise.all(Array.from({ length: 3 }, () => enqueue(userId)));
    for (const d of jobs) await waitForPhase(d.requestId, 'submitted');
    worker.signal('SIGTERM');
    const deadline = Date.now() + 10_000;
    while (!worker.logs.some((l) => l.msg === 'draining')) {
      if (Date.now() > deadline) throw new Error('worker never started draining');
      await new Promise((r) => setTimeout(r, 10));
    }
    const late = await enqueue(userId); // arrives while draining: must not be taken
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    for (const d of jobs) expect(await (await w.queue.getJob(d.requestId))!.getState()).toBe('completed');
    expect(['wait', 'waiting']).toContain(await (await w.queue.getJob(late.requestId))!.getState());
    expect(await tasksFor(late)).toHaveLength(0);
    const next = await startWorker();
    expect((await w.finished(late.requestId)).failedReason).toBeUndefined();
    expect(await available(userId)).toBe(100n - 4n * price);
    await next.stop();
    await ledger.expectInvariants();
  });

  it('SIGTERM: stops taking jobs, hands the ones still running after the grace period back; another worker finishes them', async () => {
    const userId = await userWith(100n);
    const first = await startWorker({ WORKER_DRAIN_GRACE_MS: '500' });
    const jobs = await Promise.all(Array.from({ length: 5 }, () => enqueue(userId)));
    for (const d of jobs) await waitForPhase(d.requestId, 'submitted');
    const exit = await first.stop(10_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(first.logs.some((l) => l.msg === 'stopped')).toBe(true);
    for (const d of jobs) expect(['delayed', 'wait', 'waiting']).toContain(await (await w.queue.getJob(d.requestId))!.getState());

    const second = await startWorker();
    for (const d of jobs) {
      const job = await w.finished(d.requestId);
      expect(job.failedReason).toBeUndefined();
      expect(await tasksFor(d)).toHaveLength(1);
    }
    expect((await entryKinds(userId)).filter((k) => k === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(5);
    expect(await available(userId)).toBe(100n - 5n * price);
    await second.stop();
    await ledger.expectInvariants();
  });
});
