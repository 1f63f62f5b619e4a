import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind } from '../ledger/client/index.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import type { EnhancementRequest } from './job-types.js';
import { failureReasonOf } from './job-types.js';
import { loadModelTable } from './models.js';
import { repoRoot } from '../testing/child-process.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { redisUrl, startWorkerHarness, testPrefix, type WorkerHarness, enhancementRequest } from './testing/worker-harness.js';

// The enhancement flow end to end: BullMQ on real Redis, a real ledger over gRPC, the Wavespeed
// simulator over HTTP. Each case checks the user's balance, the journal and what Wavespeed saw.

const model = 'wavespeed-ai/image-upscaler';
const price = loadModelTable().get(model)!.creditsPrice;
const cost = loadModelTable().get(model)!.upstreamCostMicros;

let ledger: TestLedger;
let sim: SimulatorChild;
let w: WorkerHarness;

const uid = () => randomBytes(6).toString('hex');

async function grant(userId: string, credits: bigint) {
  await ledger.client.admin.grant({ idempotencyKey: `grant-${uid()}`, userId, credits, bucket: Bucket.BUCKET_PURCHASED });
}

async function available(userId: string): Promise<bigint> {
  return (await ledger.client.admin.getBalance({ userId })).available;
}

async function entriesOf(userId: string) {
  return (await ledger.client.admin.listEntries({ userId, pageSize: 500 })).entries;
}

const request = enhancementRequest;

async function tasksFor(r: EnhancementRequest) {
  return (await sim.tasks()).filter((t) => t.input.image === r.input.image);
}

beforeAll(async () => {
  [ledger, sim] = await Promise.all([startTestLedger({ clock: systemClock, sweeper: true }), startSimulatorChild({ latencyMs: 300 })]);
  w = await startWorkerHarness({
    prefix: testPrefix('flow'),
    ledgerAddress: ledger.address,
    ledgerToken: ledger.options.credentials.find((c) => c.role === 'worker')!.token,
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
  });
});

afterEach(async () => {
  await sim.clearFaults();
});

afterAll(async () => {
  await w?.close();
  await sim?.stop();
  await ledger?.close();
});

describe('enhancement flow', () => {
  it('happy path: charges the model price once; the capture entry carries the prediction id and upstream cost', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue).toMatchObject({ creditsCharged: price.toString(), upstreamCostMicros: cost.toString() });
    const tasks = await tasksFor(r);
    expect(tasks).toHaveLength(1);
    expect(job.returnvalue.predictionId).toBe(tasks[0]!.id);
    expect(job.returnvalue.outputs).toHaveLength(1);
    expect(await available(user)).toBe(10n - price);
    const captures = (await entriesOf(user)).filter((e) => e.kind === EntryKind.ENTRY_KIND_CAPTURE);
    expect(captures).toHaveLength(1);
    expect(captures[0]!.metadata).toMatchObject({
      'upstream.request_id': tasks[0]!.id,
      'upstream.amount_micros': cost.toString(),
      'upstream.currency': 'USD',
      'upstream.model': model,
      request_id: r.requestId,
    });
    expect(captures[0]!.transfers.some((t) => t.unit === 'USD' && t.amount === cost)).toBe(true);
    const billed = await sim.billings([tasks[0]!.id]);
    expect(billed).toHaveLength(1);
    expect(Math.round(billed[0]!.price * 1_000_000)).toBe(Number(cost));
    await ledger.expectInvariants();
  });

  it('npm run enhance enqueues, waits and prints the outcome', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'services/worker/enhance-cli.ts', '--user', user, '--model', model, '--image', 'https://img.example/cli.png', '--request-id', `cli-${uid()}`],
      { cwd: repoRoot, timeout: 40_000, env: { ...process.env, NODE_OPTIONS: '', REDIS_URL: redisUrl, WORKER_QUEUE_PREFIX: w.prefix } },
    );
    const outcome = JSON.parse(stdout) as { ok: boolean; predictionId: string; creditsCharged: string };
    expect(outcome).toMatchObject({ ok: true, creditsCharged: price.toString() });
    expect((await sim.tasks()).find((t) => t.id === outcome.predictionId)?.input).toEqual({ image: 'https://img.example/cli.png', target_resolution: '4k' });
    expect(await available(user)).toBe(10n - price);
    await ledger.expectInvariants();
  });

  it('the same requestId enqueued twice is one job: one submit, one charge', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const r = request(user);
    await Promise.all([w.enqueue(r), w.enqueue(r), w.enqueue({ ...r })]);
    await w.finished(r.requestId);
    await w.enqueue(r); // after completion too
    await new Promise((res) => setTimeout(res, 300));
    expect(await tasksFor(r)).toHaveLength(1);
    expect(await available(user)).toBe(10n - price);
    expect((await entriesOf(user)).filter((e) => e.kind === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
    await ledger.expectInvariants();
  });

  it('the same job run twice (retried after completion, with and without its recorded result) charges once and submits once', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const r = request(user);
    await w.enqueue(r);
    const first = await w.finished(r.requestId);
    const result = first.returnvalue;
    // Run again with everything recorded: the recorded result comes back.
    await first.retry('completed');
    const second = await w.finished(r.requestId);
    expect(second.returnvalue).toEqual(result);
    // Run again as if the process had died after the capture but before recording it: the
    // job polls its prediction again and the capture is answered as a replay.
    const replaysBefore = await w.metric('enhancement_ledger_calls_total', { method: 'capture', result: 'replayed' });
    const job = (await w.queue.getJob(r.requestId))!;
    const holdId = (await entriesOf(user)).find((e) => e.kind === EntryKind.ENTRY_KIND_RESERVE)!.holdId;
    await job.updateData({ ...r, state: { phase: 'submitted', holdId, attempt: 1, predictionId: result.predictionId, submittedAtMs: Date.now() } });
    await job.retry('completed');
    const third = await w.finished(r.requestId);
    expect(third.returnvalue).toEqual(result);
    expect(await w.metric('enhancement_ledger_calls_total', { method: 'capture', result: 'replayed' })).toBe(replaysBefore + 1);
    expect(await tasksFor(r)).toHaveLength(1);
    expect(await available(user)).toBe(10n - price);
    expect((await entriesOf(user)).filter((e) => e.kind === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
    await ledger.expectInvariants();
  });

  it('a requestId enqueued again after its job was removed is refused as a duplicate: no second submit, one charge', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const r = request(user);
    await w.enqueue(r);
    await (await w.finished(r.requestId)).remove();
    await w.enqueue(r);
    const again = await w.finished(r.requestId);
    expect(failureReasonOf(again.failedReason)).toBe('DUPLICATE_REQUEST');
    expect(await tasksFor(r)).toHaveLength(1);
    expect(await available(user)).toBe(10n - price);
    expect((await entriesOf(user)).filter((e) => e.kind === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
    await ledger.expectInvariants();
  });

  it('a requestId reused for a different request (another model) is refused without a submit', async () => {
    const user = `u-${uid()}`;
    await grant(user, 30n);
    const r = request(user);
    await w.enqueue(r);
    await (await w.finished(r.requestId)).remove();
    const other: EnhancementRequest = { ...r, model: 'wavespeed-ai/flux-dev', input: { prompt: 'a cat' } };
    await w.enqueue(other);
    const job = await w.finished(r.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('INVALID_INPUT');
    expect(job.failedReason).toMatch(/requestId was already used/);
    expect((await sim.tasks()).filter((t) => t.input.prompt === 'a cat' || t.input.image === r.input.image)).toHaveLength(1);
    expect(await available(user)).toBe(30n - price);
    await ledger.expectInvariants();
  });

  it('a failed prediction (HTTP 200, status failed) releases the hold: no charge, UPSTREAM_FAILED', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    await sim.faults([{ op: 'submit', model, action: { kind: 'outcome', status: 'failed', error: 'upscaler crashed' } }]);
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('UPSTREAM_FAILED');
    expect(job.failedReason).toMatch(/upscaler crashed/);
    expect(await available(user)).toBe(10n);
    const kinds = (await entriesOf(user)).map((e) => e.kind);
    expect(kinds).toContain(EntryKind.ENTRY_KIND_RELEASE);
    expect(kinds).not.toContain(EntryKind.ENTRY_KIND_CAPTURE);
    await ledger.expectInvariants();
  });

  it('429 storms and 5xx on polling, and 429s on submit, are waited out: one task, one charge', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const before = await sim.stats();
    await sim.faults([
      { op: 'submit', model, action: { kind: 'status', status: 429, retryAfterS: 1 }, count: 2 },
      { op: 'result', action: { kind: 'status', status: 429, retryAfterS: 1 }, count: 3 },
      { op: 'result', action: { kind: 'status', status: 503 }, count: 3 },
      { op: 'result', action: { kind: 'status', status: 500 }, count: 2 },
    ]);
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(job.failedReason).toBeUndefined();
    const after = await sim.stats();
    expect(after.responses['429']! - (before.responses['429'] ?? 0)).toBe(5);
    expect(after.responses['503']! - (before.responses['503'] ?? 0)).toBe(3);
    expect(await tasksFor(r)).toHaveLength(1);
    expect(await available(user)).toBe(10n - price);
    await ledger.expectInvariants();
  });

  it('a 401 on submit fails the job and releases the hold', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    await sim.faults([{ op: 'submit', action: { kind: 'status', status: 401, message: 'Unauthorized' } }]);
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('UPSTREAM_REJECTED');
    expect(await tasksFor(r)).toHaveLength(0);
    expect(await available(user)).toBe(10n);
    expect(job.attemptsMade).toBe(1);
    await ledger.expectInvariants();
  });

  it("Wavespeed's insufficient balance (402) fails the job without charging the user", async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const { balanceMicros } = await sim.stats();
    await sim.configure({ balanceMicros: '0' });
    try {
      const r = request(user);
      await w.enqueue(r);
      const job = await w.finished(r.requestId);
      expect(failureReasonOf(job.failedReason)).toBe('UPSTREAM_REJECTED');
      expect(job.failedReason).toMatch(/402/);
      expect(await available(user)).toBe(10n);
    } finally {
      await sim.configure({ balanceMicros });
    }
    await ledger.expectInvariants();
  });

  it('an unknown submit outcome (reset after the task was created) is not repeated: released, orphan recorded', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    await sim.faults([{ op: 'submit', model, action: { kind: 'reset-after-create' } }]);
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('UPSTREAM_UNKNOWN_OUTCOME');
    const tasks = await tasksFor(r);
    expect(tasks).toHaveLength(1); // the task exists, and no second one was sent
    expect(await available(user)).toBe(10n);
    const orphans = await w.claims.orphans();
    expect(orphans[tasks[0]!.id]).toMatchObject({ requestId: r.requestId, model, expectedCostMicros: cost.toString() });
    expect(job.data.state).toMatchObject({ phase: 'failed', orphanPredictionIds: [tasks[0]!.id] });
    expect(await w.metric('enhancement_unknown_submit_outcomes_total', { resolution: 'orphaned' })).toBeGreaterThanOrEqual(1);
    await ledger.expectInvariants();
  });

  it('an unknown submit outcome where no task was created (reset before, or a 502) is resolved and sent again once', async () => {
    const user = `u-${uid()}`;
    await grant(user, 20n);
    await sim.faults([
      { op: 'submit', model, action: { kind: 'reset-before-create' } },
      { op: 'submit', model, action: { kind: 'status', status: 502 } },
    ]);
    const before = await sim.stats();
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(job.failedReason).toBeUndefined();
    expect((await sim.stats()).submits - before.submits).toBe(3);
    expect(await tasksFor(r)).toHaveLength(1);
    expect(await available(user)).toBe(20n - price);
    expect(await w.metric('enhancement_unknown_submit_outcomes_total', { resolution: 'not_created' })).toBeGreaterThanOrEqual(2);
    await ledger.expectInvariants();
  });

  it('insufficient credits fail the job unrecoverably without calling Wavespeed', async () => {
    const user = `u-${uid()}`;
    await grant(user, price - 1n);
    const r = request(user);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(failureReasonOf(job.failedReason)).toBe('INSUFFICIENT_CREDITS');
    expect(job.attemptsMade).toBe(1);
    expect(await tasksFor(r)).toHaveLength(0);
    expect(await available(user)).toBe(price - 1n);
    await ledger.expectInvariants();
  });

  it('an unknown model or bad input fails at once, touching neither the ledger nor Wavespeed', async () => {
    const user = `u-${uid()}`;
    await grant(user, 10n);
    const entriesBefore = (await entriesOf(user)).length;
    const submitsBefore = (await sim.stats()).submits;
    const bad: [EnhancementRequest, string][] = [
      [{ ...request(user), model: 'wavespeed-ai/no-such-model' }, 'UNKNOWN_MODEL'],
      [{ ...request(user), input: { target_resolution: '4k' } }, 'INVALID_INPUT'],
      [request(user, { image: 'ftp://x/y.png' }), 'INVALID_INPUT'],
      [request(user, { target_resolution: '16k' }), 'INVALID_INPUT'],
      [request(user, { prompt: 'not an input of the upscaler' }), 'INVALID_INPUT'],
      [request(user, { image: 'https://x/\u0000.png' }), 'INVALID_INPUT'],
    ];
    for (const [r] of bad) await w.queue.add('enhance', r, { jobId: r.requestId });
    // Bypassing the producer's checks: a job whose own fields are malformed.
    await w.queue.add('enhance', { requestId: 'bad id with spaces', userId: user, model, input: {} } as EnhancementRequest, { jobId: 'bad-id-job' });
    for (const [r, reason] of bad) {
      const job = await w.finished(r.requestId);
      expect(failureReasonOf(job.failedReason), JSON.stringify(job.data)).toBe(reason);
      expect(job.attemptsMade).toBe(1);
    }
    const malformed = await w.finished('bad-id-job');
    expect(failureReasonOf(malformed.failedReason)).toBe('INVALID_INPUT');
    expect(malformed.failedReason).toMatch(/requestId/);
    expect((await entriesOf(user)).length).toBe(entriesBefore);
    expect((await sim.stats()).submits).toBe(submitsBefore);
    await ledger.expectInvariants();
  });
});
