import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defaultModels, WavespeedSimulator } from './simulator.js';

// The simulator over real HTTP, checked against Wavespeed's documented contract: what a client
// written from the docs (plain fetch here) sees.

const apiKey = 'sim-key-0123456789';
const webhookSecret = 'whsec_c2ltdWxhdG9yLXNlY3JldA';
const model = 'wavespeed-ai/image-upscaler';
let sim: WavespeedSimulator;
let base: string;

const auth = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = auth) {
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: response.status, headers: response.headers, json: (await response.json()) as any };
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const submit = (input: Record<string, unknown> = { image: 'https://example.com/a.png', target_resolution: '4k' }, query = '') =>
  call('POST', `/api/v3/${model}${query}`, input);

beforeAll(async () => {
  sim = new WavespeedSimulator({ apiKey, webhookSecret, latencyMs: 300, ratePerMin: null, balanceMicros: 1_000_000n, models: defaultModels });
  await sim.listen(0);
  base = sim.url;
});

afterEach(async () => {
  await call('DELETE', '/__sim/faults');
  await call('POST', '/__sim/config', { latencyMs: 300, ratePerMin: null, balanceMicros: '1000000' });
});

afterAll(async () => {
  await sim.close();
});

describe('Wavespeed simulator', () => {
  it('refuses a missing or wrong bearer key with 401 on every endpoint', async () => {
    for (const [method, path] of [
      ['POST', `/api/v3/${model}`],
      ['GET', '/api/v3/balance'],
      ['POST', '/api/v3/predictions'],
      ['GET', '/api/v3/predictions/abc/result'],
    ] as const) {
      const none = await call(method, path, method === 'POST' ? {} : undefined, { 'content-type': 'application/json' });
      expect(none.status).toBe(401);
      expect(none.json.code).toBe(401);
      const wrong = await call(method, path, method === 'POST' ? {} : undefined, { authorization: 'Bearer nope', 'content-type': 'application/json' });
      expect(wrong.status).toBe(401);
    }
    expect(sim.stats().tasksCreated).toBe(0);
  });

  it('creates a task, serves it at both result URLs, and moves it to completed; then charges it once', async () => {
    const created = await submit();
    expect(created.status).toBe(200);
    expect(created.json).toMatchObject({ code: 200, message: 'success', data: { model, status: 'created', outputs: [] } });
    const id = created.json.data.id as string;
    expect(created.json.data.urls.get).toBe(`${base}/api/v3/predictions/${id}/result`);
    const early = await call('GET', `/api/v3/predictions/${id}`);
    expect(['created', 'processing']).toContain(early.json.data.status);
    const done = await waitFor(async () => {
      const r = await call('GET', `/api/v3/predictions/${id}/result`);
      return r.json.data.status === 'completed' ? r : undefined;
    });
    expect(done.status).toBe(200);
    expect(done.json.data.outputs).toHaveLength(1);
    const short = await call('GET', `/api/v3/predictions/${id}`);
    expect(short.json.data).toMatchObject({ id, status: 'completed' });
    const balance = await call('GET', '/api/v3/balance');
    expect(balance.json.data.balance).toBeCloseTo(0.99, 10);
    const billing = await call('POST', '/api/v3/billings/search', { page: 1, page_size: 10, prediction_uuids: [id] });
    expect(billing.json.data.total).toBe(1);
    expect(billing.json.data.items[0]).toMatchObject({ billing_type: 'deduct', price: 0.01, prediction: { uuid: id, model_uuid: model } });
  });

  it('reports a failed task as HTTP 200 with status failed and does not charge it', async () => {
    await call('POST', '/__sim/faults', { rules: [{ op: 'submit', model, action: { kind: 'outcome', status: 'failed', error: 'boom' } }] });
    const before = sim.stats().chargedMicros;
    const id = (await submit()).json.data.id as string;
    const failed = await waitFor(async () => {
      const r = await call('GET', `/api/v3/predictions/${id}/result`);
      return r.json.data.status === 'failed' ? r : undefined;
    });
    expect(failed.status).toBe(200);
    expect(failed.json.data.error).toBe('boom');
    expect(sim.stats().chargedMicros).toBe(before);
  });

  it('rate-limits submits with a token bucket: 429 with Retry-After, no task created', async () => {
    await call('POST', '/__sim/config', { ratePerMin: 60, burst: 2 });
    const tasks = sim.stats().tasksCreated;
    const answers = [await submit(), await submit(), await submit()];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429]);
    expect(Number(answers[2]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(sim.stats().tasksCreated).toBe(tasks + 2);
  });

  it('injects 5xx for the next N requests of one operation, then answers normally', async () => {
    const id = (await submit()).json.data.id as string;
    await call('POST', '/__sim/faults', { rules: [{ op: 'result', action: { kind: 'status', status: 503 }, count: 2 }] });
    expect((await call('GET', `/api/v3/predictions/${id}/result`)).status).toBe(503);
    expect((await call('GET', `/api/v3/predictions/${id}/result`)).status).toBe(503);
    expect((await call('GET', `/api/v3/predictions/${id}/result`)).status).toBe(200);
  });

  it('refuses a task the balance cannot pay for (402), counting tasks still running', async () => {
    await waitFor(async () => (sim.stats().pendingMicros === '0' ? true : undefined));
    await call('POST', '/__sim/config', { balanceMicros: '15000', latencyMs: 5_000 });
    expect((await submit()).status).toBe(200);
    const refused = await submit();
    expect(refused.status).toBe(402);
    expect(refused.json.message).toMatch(/balance/i);
  });

  it('resets the connection after creating the task: the client gets no answer, the listing shows the task', async () => {
    await call('POST', '/__sim/faults', { rules: [{ op: 'submit', action: { kind: 'reset-after-create' } }] });
    const since = new Date().toISOString();
    await expect(submit({ image: 'https://example.com/reset.png' })).rejects.toThrow();
    const listed = await call('POST', '/api/v3/predictions', { page: 1, page_size: 100, model, created_after: since });
    expect(listed.json.data.items.map((t: { id: string }) => t.id)).toHaveLength(1);
    const tasks = (await call('GET', '/__sim/tasks')).json.tasks as { id: string; input: { image: string } }[];
    expect(tasks.at(-1)!.input.image).toBe('https://example.com/reset.png');
    expect(listed.json.data.items[0].id).toBe(tasks.at(-1)!.id);
  });

  it('refuses bad input (400) and unknown models (404) without creating a task', async () => {
    const tasks = sim.stats().tasksCreated;
    expect((await submit({ target_resolution: '4k' })).status).toBe(400);
    expect((await call('POST', '/api/v3/nobody/no-model', { image: 'x' })).status).toBe(404);
    expect(sim.stats().tasksCreated).toBe(tasks);
  });

  it('sends a signed webhook that verifies with the documented HMAC scheme', async () => {
    const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    try {
      const target = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const id = (await submit(undefined, `?webhook=${encodeURIComponent(target)}`)).json.data.id as string;
      const hook = await waitFor(async () => received[0]);
      const secret = ((await call('GET', '/api/v3/webhook/secret')).json.data.secret as string).replace(/^whsec_/, '');
      const signed = `${hook.headers['webhook-id']}.${hook.headers['webhook-timestamp']}.${hook.body}`;
      const expected = createHmac('sha256', secret).update(signed).digest('hex');
      expect(hook.headers['webhook-signature']).toBe(`v3,${expected}`);
      expect(Math.abs(Number(hook.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(30);
      expect(JSON.parse(hook.body)).toMatchObject({ id, model, status: 'completed' });
    } finally {
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });

  it('refuses an oversized body with 413 and creates nothing', async () => {
    const tasks = sim.stats().tasksCreated;
    const answer = await submit({ image: 'https://example.com/a.png', padding: 'x'.repeat(1_100_000) });
    expect(answer.status).toBe(413);
    expect(sim.stats().tasksCreated).toBe(tasks);
  });

  it('refuses malformed fault rules and listing queries with a message naming the field', async () => {
    const bad = await call('POST', '/__sim/faults', { rules: [{ op: 'submit', action: { kind: 'status', status: 200 } }] });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/rules\.0\.action\.status/);
    const list = await call('POST', '/api/v3/predictions', { page: 1, page_size: 101 });
    expect(list.status).toBe(400);
    expect(list.json.message).toMatch(/page_size/);
  });
});
