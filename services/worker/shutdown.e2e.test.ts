import { describe, expect, it } from 'vitest';
import { EntryKind } from '../ledger/client/index.js';
import type { EnhancementJobData } from './job-types.js';
import { fixturePrice, workerProcessFixture } from './testing/worker-process-fixture.js';

// Real worker processes stopped with SIGTERM mid-job: drain within the grace, or hand back. Jobs are enqueued
// with BullMQ's own Queue (no helper of ours); the worker under test is `services/worker/main.ts`.

const fx = workerProcessFixture('shutdown');
const { startWorker, userWith, enqueue, waitForPhase, tasksFor, available, entryKinds } = fx;

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
    for (const d of jobs) expect(await (await fx.w.queue.getJob(d.requestId))!.getState()).toBe('completed');
    expect(['wait', 'waiting']).toContain(await (await fx.w.queue.getJob(late.requestId))!.getState());
    expect(await tasksFor(late)).toHaveLength(0);
    const next = await startWorker();
    expect((await fx.w.finished(late.requestId)).failedReason).toBeUndefined();
    expect(await available(userId)).toBe(100n - 4n * fixturePrice);
    await next.stop();
    await fx.ledger.expectInvariants();
  });

  it('SIGTERM: stops taking jobs, hands the ones still running after the grace period back; another worker finishes them', async () => {
    const userId = await userWith(100n);
    const first = await startWorker({ WORKER_DRAIN_GRACE_MS: '500' });
    const jobs = await Promise.all(Array.from({ length: 5 }, () => enqueue(userId)));
    for (const d of jobs) await waitForPhase(d.requestId, 'submitted');
    const exit = await first.stop(10_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(first.logs.some((l) => l.msg === 'stopped')).toBe(true);
    for (const d of jobs) expect(['delayed', 'wait', 'waiting']).toContain(await (await fx.w.queue.getJob(d.requestId))!.getState());

    const second = await startWorker();
    for (const d of jobs) {
      const job = await fx.w.finished(d.requestId);
      expect(job.failedReason).toBeUndefined();
      expect(await tasksFor(d)).toHaveLength(1);
    }
    expect((await entryKinds(userId)).filter((k) => k === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(5);
    expect(await available(userId)).toBe(100n - 5n * fixturePrice);
    await second.stop();
    await fx.ledger.expectInvariants();
  });
});
