import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind } from '../ledger/client/index.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import { failureReasonOf, type EnhancementJobData } from './job-types.js';
import { loadModelTable } from './models.js';
import type { Child } from './testing/child-process.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { startWorkerChild } from './testing/worker-child.js';
import { startWorkerHarness, testPrefix, type WorkerHarness } from './testing/worker-harness.js';

// Real worker processes killed with SIGKILL mid-job (SIGTERM: shutdown.e2e.test.ts). Jobs are enqueued
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
    prefix: testPrefix('crash'),
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

describe('worker crashes', () => {
  it('kill -9 after submit, before capture: the job resumes on restart, polls the same prediction, captures once', async () => {
    const userId = await userWith(10n);
    const first = await startWorker();
    const data = await enqueue(userId);
    const submitted = await waitForPhase(data.requestId, 'submitted');
    const predictionId = (submitted.data.state as { predictionId: string }).predictionId;
    await first.kill();
    expect(await entryKinds(userId)).not.toContain(EntryKind.ENTRY_KIND_CAPTURE);

    const second = await startWorker();
    const job = await w.finished(data.requestId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.predictionId).toBe(predictionId);
    const tasks = await tasksFor(data);
    expect(tasks.map((t) => t.id)).toEqual([predictionId]); // Wavespeed saw exactly one submit
    expect(second.logs.some((l) => l.msg === 'resuming: polling the recorded prediction' && l.predictionId === predictionId)).toBe(true);
    expect((await entryKinds(userId)).filter((k) => k === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
    expect(await available(userId)).toBe(10n - price);
    // Every log line about this job names it, and from the resume on, its prediction too.
    const lines = second.logs.filter((l) => l.requestId === data.requestId);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.predictionId === predictionId)).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${second.ready.metricsPort as number}/metrics`)).text();
    expect(metrics).toMatch(/^enhancement_jobs_total\{outcome="completed"\} 1$/m);
    expect(metrics).toMatch(/^enhancement_holds_extended_total [1-9]/m);
    expect(metrics).toMatch(/^enhancement_upstream_latency_seconds_count\{model="wavespeed-ai\/image-upscaler",status="completed"\} 1$/m);
    await second.stop();
    await ledger.expectInvariants();
  });

  it('kill -9 while the submit is in flight: the restarted worker resolves the unknown outcome instead of submitting again', async () => {
    const userId = await userWith(10n);
    // The task is created at once but its answer is held back, so the worker dies not knowing.
    await sim.faults([{ op: 'submit', model, action: { kind: 'delay', ms: 5_000 } }]);
    const first = await startWorker();
    const data = await enqueue(userId);
    await waitForPhase(data.requestId, 'submitting');
    await new Promise((r) => setTimeout(r, 300)); // the request reaches the simulator
    await first.kill();
    await sim.clearFaults();
    const second = await startWorker();
    const job = await w.finished(data.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('UPSTREAM_UNKNOWN_OUTCOME');
    const tasks = await tasksFor(data);
    expect(tasks).toHaveLength(1);
    expect(Object.keys(await w.claims.orphans())).toContain(tasks[0]!.id);
    expect(await available(userId)).toBe(10n);
    await second.stop();
    await ledger.expectInvariants();
  });

  it('a dead worker leaves a hold that lapses on its own; the resumed job then charges once without it', async () => {
    const userId = await userWith(10n);
    const first = await startWorker({ WORKER_HOLD_TTL_MS: '3000' });
    const data = await enqueue(userId);
    await waitForPhase(data.requestId, 'submitted');
    await first.kill();
    // Nobody extends the hold now: the ledger's sweeper voids it after its TTL.
    const deadline = Date.now() + 15_000;
    while (!(await entryKinds(userId)).includes(EntryKind.ENTRY_KIND_HOLD_TIMEOUT)) {
      if (Date.now() > deadline) throw new Error('hold never lapsed');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await available(userId)).toBe(10n);
    const second = await startWorker({ WORKER_HOLD_TTL_MS: '3000' });
    const job = await w.finished(data.requestId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.creditsCharged).toBe(price.toString());
    const kinds = await entryKinds(userId);
    expect(kinds.filter((k) => k === EntryKind.ENTRY_KIND_CONSUME)).toHaveLength(1);
    expect(kinds).not.toContain(EntryKind.ENTRY_KIND_CAPTURE);
    expect(await tasksFor(data)).toHaveLength(1);
    expect(await available(userId)).toBe(10n - price);
    await second.stop();
    await ledger.expectInvariants();
  });
});
