import { afterAll, beforeAll } from 'vitest';
import { startTestLedger, type TestLedger } from '../../ledger/testing/ledger-harness.js';
import { systemClock } from '../../lib/clock.js';
import type { EnhancementJobData } from '../job-types.js';
import { loadModelTable } from '../models.js';
import type { Child } from '../../testing/child-process.js';
import { startSimulatorChild, type SimulatorChild } from './simulator-child.js';
import { startWorkerChild } from './worker-child.js';
import { enhancementRequest, grantedUser, startWorkerHarness, testModel, testPrefix, type WorkerHarness } from './worker-harness.js';

/**
 * What the tests of real worker processes share (crash.e2e, shutdown.e2e): a ledger with its
 * sweepers on, a simulator child at 3 s latency, and a queue in this process (no worker here).
 * Worker children started through it are killed at the end. Jobs are enqueued with BullMQ's own
 * Queue. Call it at the top of a test file: it registers the file's beforeAll and afterAll.
 */
export const fixtureModel = testModel;
export const fixturePrice = loadModelTable().get(fixtureModel)!.creditsPrice;

export interface WorkerProcessFixture {
  readonly ledger: TestLedger;
  readonly sim: SimulatorChild;
  readonly w: WorkerHarness;
  startWorker(env?: Record<string, string>): Promise<Child>;
  userWith(credits: bigint): Promise<string>;
  enqueue(userId: string): Promise<EnhancementJobData>;
  waitForPhase(requestId: string, phase: string, timeoutMs?: number): Promise<NonNullable<Awaited<ReturnType<WorkerHarness['queue']['getJob']>>>>;
  tasksFor(d: EnhancementJobData): Promise<Awaited<ReturnType<SimulatorChild['tasks']>>>;
  available(userId: string): Promise<bigint>;
  entryKinds(userId: string): Promise<number[]>;
}

export function workerProcessFixture(name: string): WorkerProcessFixture {
  let ledger: TestLedger;
  let sim: SimulatorChild;
  let w: WorkerHarness;
  const children: Child[] = [];

  beforeAll(async () => {
    [ledger, sim] = await Promise.all([startTestLedger({ clock: systemClock, sweeper: true }), startSimulatorChild({ latencyMs: 3_000 })]);
    w = await startWorkerHarness({
      prefix: testPrefix(name),
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

  return {
    get ledger() {
      return ledger;
    },
    get sim() {
      return sim;
    },
    get w() {
      return w;
    },
    async startWorker(env = {}) {
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
    },
    userWith: (credits) => grantedUser(ledger.client.admin, credits),
    async enqueue(userId) {
      const data = enhancementRequest(userId);
      await w.queue.add('enhance', data, { jobId: data.requestId, attempts: 3 });
      return data;
    },
    async waitForPhase(requestId, phase, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const job = await w.queue.getJob(requestId);
        if (job?.data.state?.phase === phase) return job;
        if (Date.now() > deadline) throw new Error(`job ${requestId} never reached ${phase} (at ${JSON.stringify(job?.data.state)})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    tasksFor: async (d) => (await sim.tasks()).filter((t) => t.input.image === d.input.image),
    available: async (userId) => (await ledger.client.admin.getBalance({ userId })).available,
    entryKinds: async (userId) => (await ledger.client.admin.listEntries({ userId, pageSize: 500 })).entries.map((e) => e.kind),
  };
}
