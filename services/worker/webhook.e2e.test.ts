import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntryKind } from '../ledger/client/index.js';
import { startTestLedger, type TestLedger } from '../ledger/testing/ledger-harness.js';
import { systemClock } from '../lib/clock.js';
import { loadModelTable } from './models.js';
import { startSimulatorChild, type SimulatorChild } from './testing/simulator-child.js';
import { startWorkerHarness, testPrefix, type WorkerHarness, grantedUser, enhancementRequest } from './testing/worker-harness.js';

// With Wavespeed's webhooks configured, a submit whose answer was lost is tied to its task by
// the signed webhook of that very submit: the user gets the result and is charged once.

const model = 'wavespeed-ai/image-upscaler';
const price = loadModelTable().get(model)!.creditsPrice;

let ledger: TestLedger;
let sim: SimulatorChild;
let w: WorkerHarness;


const userWith = (credits: bigint) => grantedUser(ledger.client.admin, credits);

const request = enhancementRequest;

/** Signs like Wavespeed (independently of both the simulator's and the worker's code). */
function sign(secret: string, id: string, timestamp: number, body: string): string {
  return `v3,${createHmac('sha256', secret.replace(/^whsec_/, '')).update(`${id}.${timestamp}.${body}`).digest('hex')}`;
}

beforeAll(async () => {
  [ledger, sim] = await Promise.all([startTestLedger({ clock: systemClock, sweeper: true }), startSimulatorChild({ latencyMs: 500 })]);
  w = await startWorkerHarness({
    prefix: testPrefix('webhook'),
    ledgerAddress: ledger.address,
    ledgerToken: ledger.options.credentials.find((c) => c.role === 'worker')!.token,
    simulatorUrl: sim.url,
    apiKey: sim.apiKey,
    webhooks: true,
  });
});

afterAll(async () => {
  await w?.close();
  await sim?.stop();
  await ledger?.close();
});

describe('Wavespeed webhooks', () => {
  it('every submit carries its webhook URL; the signed webhook of a normal job is received and kept', async () => {
    const userId = await userWith(10n);
    const r = request(userId);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(job.failedReason).toBeUndefined();
    const key = `${w.prefix}:enhancements:webhook:${r.requestId}:1`;
    const deadline = Date.now() + 10_000;
    while ((await w.redis.get(key)) === null) {
      if (Date.now() > deadline) throw new Error('webhook never arrived');
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(JSON.parse((await w.redis.get(key))!)).toMatchObject({ id: job.returnvalue.predictionId, status: 'completed' });
    await ledger.expectInvariants();
  });

  it('an unknown submit whose task was created is adopted through its webhook: the result is delivered and charged once', async () => {
    const userId = await userWith(10n);
    await sim.faults([{ op: 'submit', model, action: { kind: 'reset-after-create' } }]);
    const r = request(userId);
    await w.enqueue(r);
    const job = await w.finished(r.requestId);
    expect(job.failedReason).toBeUndefined();
    const tasks = (await sim.tasks()).filter((t) => t.input.image === r.input.image);
    expect(tasks).toHaveLength(1);
    expect(job.returnvalue.predictionId).toBe(tasks[0]!.id);
    expect(await w.metric('enhancement_unknown_submit_outcomes_total', { resolution: 'webhook' })).toBe(1);
    expect(Object.keys(await w.claims.orphans())).not.toContain(tasks[0]!.id);
    expect((await ledger.client.admin.listEntries({ userId, pageSize: 100 })).entries.filter((e) => e.kind === EntryKind.ENTRY_KIND_CAPTURE)).toHaveLength(1);
    expect((await ledger.client.admin.getBalance({ userId })).available).toBe(10n - price);
    await ledger.expectInvariants();
  });

  it('refuses forged, stale and malformed webhooks and keeps nothing from them', async () => {
    const url = w.webhookUrl!;
    const body = JSON.stringify({ id: 'forged-prediction', status: 'completed', outputs: ['https://evil.example/x.png'] });
    const now = Math.floor(Date.now() / 1000);
    const post = (query: string, headers: Record<string, string>, payload = body) =>
      fetch(`${url}?${query}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload });
    const forged = await post('request_id=victim&attempt=1', { 'webhook-id': 'w1', 'webhook-timestamp': String(now), 'webhook-signature': sign('whsec_wrong-secret', 'w1', now, body) });
    expect(forged.status).toBe(401);
    const stale = await post('request_id=victim&attempt=1', { 'webhook-id': 'w2', 'webhook-timestamp': String(now - 3_600), 'webhook-signature': sign(sim.webhookSecret, 'w2', now - 3_600, body) });
    expect(stale.status).toBe(401);
    const tampered = await post(
      'request_id=victim&attempt=1',
      { 'webhook-id': 'w3', 'webhook-timestamp': String(now), 'webhook-signature': sign(sim.webhookSecret, 'w3', now, body) },
      body.replace('completed', 'failed'),
    );
    expect(tampered.status).toBe(401);
    const noRequest = await post('attempt=1', { 'webhook-id': 'w4', 'webhook-timestamp': String(now), 'webhook-signature': sign(sim.webhookSecret, 'w4', now, body) });
    expect(noRequest.status).toBe(400);
    expect(await w.redis.keys(`${w.prefix}:enhancements:webhook:victim:*`)).toEqual([]);
    const genuine = await post('request_id=victim&attempt=1', { 'webhook-id': 'w5', 'webhook-timestamp': String(now), 'webhook-signature': sign(sim.webhookSecret, 'w5', now, body) });
    expect(genuine.status).toBe(204);
    expect(await w.redis.keys(`${w.prefix}:enhancements:webhook:victim:*`)).toHaveLength(1);
  });
});
