import { describe, expect, it } from 'vitest';
import { EntryKind } from '../ledger/client/index.js';
import { failureReasonOf, type EnhancementJobData } from './job-types.js';
import { fixtureModel, fixturePrice, workerProcessFixture } from './testing/worker-process-fixture.js';

// Real worker processes killed with SIGKILL mid-job (SIGTERM: shutdown.e2e.test.ts). Jobs are enqueued
// with BullMQ's own Queue (no helper of ours); the worker under test is `services/worker/main.ts`.

const fx = workerProcessFixture('crash');
const { startWorker, userWith, enqueue, waitForPhase, tasksFor, available, entryKinds } = fx;

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
    const job = await fx.w.finished(data.requestId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.predictionId).toBe(predictionId);
    const tasks = await tasksFor(data);
    expect(tasks.map((t) => t.id)).toEqual([predictionId]); // Wavespeed saw exactly one submit
    expect(second.logs.some((l) => l.msg === 'resuming: polling the recorded prediction' && l.predictionId === predictionId)).toBe(true);
    expect((await entryKinds(userId)).filter((k) => k === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
    expect(await available(userId)).toBe(10n - fixturePrice);
    // Every log line about this job names it, and from the resume on, its prediction too.
    const lines = second.logs.filter((l) => l.requestId === data.requestId);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.predictionId === predictionId)).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${second.ready.metricsPort as number}/metrics`)).text();
    expect(metrics).toMatch(/^enhancement_jobs_total\{outcome="completed"\} 1$/m);
    expect(metrics).toMatch(/^enhancement_holds_extended_total [1-9]/m);
    expect(metrics).toMatch(/^enhancement_upstream_latency_seconds_count\{model="wavespeed-ai\/image-upscaler",status="completed"\} 1$/m);
    await second.stop();
    await fx.ledger.expectInvariants();
  });

  it('kill -9 while the submit is in flight: the restarted worker resolves the unknown outcome instead of submitting again', async () => {
    const userId = await userWith(10n);
    // The task is created at once but its answer is held back, so the worker dies not knowing.
    await fx.sim.faults([{ op: 'submit', model: fixtureModel, action: { kind: 'delay', ms: 5_000 } }]);
    const first = await startWorker();
    const data = await enqueue(userId);
    await waitForPhase(data.requestId, 'submitting');
    await new Promise((r) => setTimeout(r, 300)); // the request reaches the simulator
    await first.kill();
    await fx.sim.clearFaults();
    const second = await startWorker();
    const job = await fx.w.finished(data.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('UPSTREAM_UNKNOWN_OUTCOME');
    const tasks = await tasksFor(data);
    expect(tasks).toHaveLength(1);
    expect(Object.keys(await fx.w.claims.orphans())).toContain(tasks[0]!.id);
    expect(await available(userId)).toBe(10n);
    await second.stop();
    await fx.ledger.expectInvariants();
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
    const job = await fx.w.finished(data.requestId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.creditsCharged).toBe(fixturePrice.toString());
    const kinds = await entryKinds(userId);
    expect(kinds.filter((k) => k === EntryKind.ENTRY_KIND_CONSUME)).toHaveLength(1);
    expect(kinds).not.toContain(EntryKind.ENTRY_KIND_CAPTURE);
    expect(await tasksFor(data)).toHaveLength(1);
    expect(await available(userId)).toBe(10n - fixturePrice);
    await second.stop();
    await fx.ledger.expectInvariants();
  });
});
