import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { FaultTable, faultRuleSchema, type FaultAction, type Operation } from './faults.js';
import { TokenBucket } from './token-bucket.js';
import { signWebhook } from './webhook-signature.js';

/**
 * A local stand-in for Wavespeed's REST API (v3), following its documented contract:
 *
 * - `POST /api/v3/{model-id}` (bearer key) creates a task: `{code, message, data: {id, model,
 *   status: "created", urls: {get}, …}}`; an optional `?webhook=URL` gets the final task POSTed,
 *   signed like Wavespeed's (`webhook-id`, `webhook-timestamp`, `webhook-signature: v3,<hex>`).
 * - `GET /api/v3/predictions/{id}/result` and `GET /api/v3/predictions/{id}`: the task, moving
 *   created → processing → completed | failed | cancelled | timeout. A failed task is HTTP 200.
 * - `POST /api/v3/predictions`: the paginated listing (page, page_size ≤ 100, model, status,
 *   created_after, created_before), newest first.
 * - `GET /api/v3/balance`, `POST /api/v3/billings/search` (what was charged, per prediction),
 *   `GET /api/v3/webhook/secret`.
 * - Errors: 401 for a bad key, 429 with Retry-After from a token bucket on submits, 404 for an
 *   unknown model or task, 400 for bad input, 402 when the balance cannot pay for the task.
 *
 * A task is charged when it completes (failed, cancelled and timed-out tasks are free). Test
 * controls live under `/__sim/` (no key): fault rules, configuration, counters, reset.
 */

export interface ModelSpec {
  priceMicros: bigint;
  /** Input fields the model refuses to run without (400 otherwise). */
  required: string[];
}

export interface SimulatorOptions {
  apiKey: string;
  /** `whsec_…`; the part after the prefix keys the webhook HMAC. */
  webhookSecret: string;
  /** Time from creation to the final status. */
  latencyMs: number;
  /** Submits per minute the account may make; null: no limit. */
  ratePerMin: number | null;
  /** Bucket size (burst); defaults to one second's worth, at least 1. */
  burst?: number;
  balanceMicros: bigint;
  models: Record<string, ModelSpec>;
}

export const defaultModels: Record<string, ModelSpec> = {
  'wavespeed-ai/image-upscaler': { priceMicros: 10_000n, required: ['image'] },
  'wavespeed-ai/flux-dev': { priceMicros: 25_000n, required: ['prompt'] },
};

type FinalStatus = 'completed' | 'failed' | 'cancelled' | 'timeout';

interface Task {
  id: string;
  model: string;
  input: Record<string, unknown>;
  createdAtMs: number;
  processingAtMs: number;
  finishAtMs: number;
  final: FinalStatus;
  error: string;
  priceMicros: bigint;
  webhook: string | null;
  finished: boolean;
  resultReads: number;
}

interface Billing {
  uuid: string;
  predictionId: string;
  model: string;
  priceMicros: bigint;
  createdAtMs: number;
}

export interface SimulatorStats {
  requests: Record<string, number>;
  responses: Record<string, number>;
  submits: number;
  tasksCreated: number;
  tasksByModel: Record<string, number>;
  resultReads: number;
  listCalls: number;
  rateLimited: number;
  webhooksSent: number;
  webhookFailures: number;
  balanceMicros: string;
  chargedMicros: string;
  /** What tasks still running will cost when they complete. */
  pendingMicros: string;
}

const jsonLimitBytes = 1_000_000;
const reservedPaths = new Set(['predictions', 'balance', 'billings/search', 'webhook/secret']);

const listSchema = z.object({
  page: z.number().int().min(1).default(1),
  page_size: z.number().int().min(1).max(100).default(100),
  model: z.string().max(200).nullish(),
  status: z.enum(['completed', 'failed', 'processing', 'created', 'cancelled', 'timeout']).nullish(),
  created_after: z.string().datetime({ offset: true }).nullish(),
  created_before: z.string().datetime({ offset: true }).nullish(),
});

const billingSearchSchema = z.object({
  page: z.number().int().min(1).default(1),
  page_size: z.number().int().min(1).max(100).default(10),
  billing_type: z.string().max(50).nullish(),
  prediction_uuids: z.array(z.string().max(200)).max(1_000).nullish(),
  sort: z.enum(['created_at ASC', 'created_at DESC']).nullish(),
  start_time: z.union([z.string(), z.number()]).nullish(),
  end_time: z.union([z.string(), z.number()]).nullish(),
});

const configSchema = z.object({
  latencyMs: z.number().int().min(0).max(3_600_000).optional(),
  ratePerMin: z.number().int().min(1).max(10_000_000).nullable().optional(),
  burst: z.number().int().min(1).max(1_000_000).optional(),
  balanceMicros: z.string().regex(/^\d{1,18}$/).optional(),
  webhookSecret: z.string().min(8).max(200).optional(),
  apiKey: z.string().min(1).max(500).optional(),
});

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const usd = (micros: bigint) => Number(micros) / 1_000_000;

export class WavespeedSimulator {
  readonly server: http.Server;
  readonly faults = new FaultTable();
  #options: SimulatorOptions;
  #bucket: TokenBucket | null;
  #tasks = new Map<string, Task>();
  /** Creation order, for the listing (newest first). */
  #order: Task[] = [];
  #billings: Billing[] = [];
  #pendingMicros = 0n;
  #chargedMicros = 0n;
  #timers = new Set<NodeJS.Timeout>();
  #stats = {
    requests: {} as Record<string, number>,
    responses: {} as Record<string, number>,
    submits: 0,
    tasksCreated: 0,
    tasksByModel: {} as Record<string, number>,
    resultReads: 0,
    listCalls: 0,
    rateLimited: 0,
    webhooksSent: 0,
    webhookFailures: 0,
  };

  constructor(options: SimulatorOptions) {
    this.#options = { ...options, models: { ...options.models } };
    this.#bucket = this.#makeBucket();
    this.server = http.createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent && !res.destroyed) this.#send(res, 500, { code: 500, message: String(error), data: null });
      });
    });
    this.server.keepAliveTimeout = 30_000;
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    const a = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${a.port}`;
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  stats(): SimulatorStats {
    return {
      ...this.#stats,
      balanceMicros: this.#options.balanceMicros.toString(),
      chargedMicros: this.#chargedMicros.toString(),
      pendingMicros: this.#pendingMicros.toString(),
    };
  }

  #makeBucket(): TokenBucket | null {
    const rate = this.#options.ratePerMin;
    if (rate === null) return null;
    return new TokenBucket(rate, this.#options.burst ?? Math.max(1, Math.floor(rate / 60)));
  }

  #count(map: Record<string, number>, key: string): void {
    map[key] = (map[key] ?? 0) + 1;
  }

  #send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    this.#count(this.#stats.responses, String(status));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  #error(res: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
    this.#send(res, status, { code: status, message, data: null }, headers);
  }

  async #readJson(req: http.IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    // An oversized body is read to its end but not kept, so the client gets the 413 instead of
    // a connection closed under it (past 16 MB the connection is dropped).
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > 16 * jsonLimitBytes) {
        req.socket.destroy();
        throw new HttpError(413, 'request body too large');
      }
      if (size <= jsonLimitBytes) chunks.push(chunk);
    }
    if (size > jsonLimitBytes) throw new HttpError(413, `request body too large (limit ${jsonLimitBytes} bytes)`);
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return {};
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
  }

  #authorized(req: http.IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    const expected = Buffer.from(`Bearer ${this.#options.apiKey}`);
    const given = Buffer.from(header);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const origin = `http://${req.headers.host ?? '127.0.0.1'}`;
    try {
      if (url.pathname.startsWith('/__sim/')) return await this.#admin(req, res, url);
      if (!url.pathname.startsWith('/api/v3/')) throw new HttpError(404, 'not found');
      const rest = decodeURIComponent(url.pathname.slice('/api/v3/'.length)).replace(/\/+$/, '');
      const op = this.#operation(req.method ?? 'GET', rest);
      this.#count(this.#stats.requests, op ?? 'other');
      if (!this.#authorized(req)) throw new HttpError(401, 'Unauthorized: invalid authentication, please check your API key');
      switch (op) {
        case 'submit':
          return await this.#submit(req, res, rest, url, origin);
        case 'result':
          return await this.#result(res, rest, origin);
        case 'list':
          return await this.#list(req, res, origin);
        case 'balance':
          return await this.#balance(res);
        case 'billing':
          return await this.#billing(req, res);
        default:
          if (req.method === 'GET' && rest === 'webhook/secret') {
            return this.#send(res, 200, { code: 200, message: 'success', data: { secret: this.#options.webhookSecret } });
          }
          throw new HttpError(404, 'not found');
      }
    } catch (error) {
      if (error instanceof HttpError) return this.#error(res, error.status, error.message);
      throw error;
    }
  }

  #operation(method: string, rest: string): Operation | null {
    if (method === 'POST' && rest === 'predictions') return 'list';
    if (method === 'GET' && /^predictions\/[^/]+(\/result)?$/.test(rest)) return 'result';
    if (method === 'GET' && rest === 'balance') return 'balance';
    if (method === 'POST' && rest === 'billings/search') return 'billing';
    if (method === 'POST' && !reservedPaths.has(rest) && !rest.startsWith('predictions/')) return 'submit';
    return null;
  }

  /**
   * Applies the fault rules that answer instead of the normal handler (status, reset before
   * creation, delay). Returns true when the request was answered (or dropped) here.
   */
  async #preFaults(op: Operation, model: string | null, res: http.ServerResponse): Promise<{ done: boolean; delayMs: number }> {
    const action = this.faults.take(op, model, ['status', 'reset-before-create', 'delay']);
    if (action === null) return { done: false, delayMs: 0 };
    if (action.kind === 'status') {
      const headers: Record<string, string> = action.retryAfterS !== undefined ? { 'retry-after': String(action.retryAfterS) } : {};
      if (action.status === 429) this.#stats.rateLimited += 1;
      this.#error(res, action.status, action.message ?? http.STATUS_CODES[action.status] ?? 'error', headers);
      return { done: true, delayMs: 0 };
    }
    if (action.kind === 'reset-before-create') {
      res.socket?.destroy();
      return { done: true, delayMs: 0 };
    }
    return { done: false, delayMs: action.kind === 'delay' ? action.ms : 0 };
  }

  async #submit(req: http.IncomingMessage, res: http.ServerResponse, model: string, url: URL, origin: string): Promise<void> {
    this.#stats.submits += 1;
    const body = await this.#readJson(req);
    const spec = this.#options.models[model];
    if (!spec) throw new HttpError(404, `model not found: ${model}`);
    const pre = await this.#preFaults('submit', model, res);
    if (pre.done) return;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
    const input = body as Record<string, unknown>;
    for (const field of spec.required) {
      if (typeof input[field] !== 'string' || (input[field] as string).length === 0) {
        throw new HttpError(400, `invalid input: ${field} is required`);
      }
    }
    if (this.#bucket) {
      const taken = this.#bucket.take();
      if (!taken.ok) {
        this.#stats.rateLimited += 1;
        return this.#error(res, 429, 'Too Many Requests: rate limit exceeded', {
          'retry-after': String(Math.max(1, Math.ceil(taken.retryAfterMs / 1000))),
        });
      }
    }
    if (this.#options.balanceMicros - this.#pendingMicros < spec.priceMicros) {
      throw new HttpError(402, 'Insufficient balance: please top up your account');
    }
    const webhook = url.searchParams.get('webhook');
    if (webhook !== null && !/^https?:\/\//.test(webhook)) throw new HttpError(400, 'webhook must be an http(s) URL');
    const outcome = this.faults.take('submit', model, ['outcome']);
    const latency = this.faults.take('submit', model, ['latency']);
    const task = this.#create(model, input, spec, webhook, outcome, latency);
    const after = this.faults.take('submit', model, ['reset-after-create']);
    if (pre.delayMs > 0) await this.#sleep(pre.delayMs);
    if (after !== null) {
      res.socket?.destroy();
      return;
    }
    this.#send(res, 200, { code: 200, message: 'success', data: this.#view(task, origin) });
  }

  #create(
    model: string,
    input: Record<string, unknown>,
    spec: ModelSpec,
    webhook: string | null,
    outcome: FaultAction | null,
    latency: FaultAction | null,
  ): Task {
    const now = Date.now();
    const latencyMs = latency?.kind === 'latency' ? latency.ms : this.#options.latencyMs;
    const final: FinalStatus = outcome?.kind === 'outcome' ? outcome.status : 'completed';
    const task: Task = {
      id: randomBytes(16).toString('hex'),
      model,
      input,
      createdAtMs: now,
      processingAtMs: now + Math.min(100, Math.floor(latencyMs / 4)),
      finishAtMs: now + latencyMs,
      final,
      error: final === 'completed' ? '' : outcome?.kind === 'outcome' && outcome.error ? outcome.error : `task ${final}`,
      priceMicros: spec.priceMicros,
      webhook,
      finished: false,
      resultReads: 0,
    };
    this.#tasks.set(task.id, task);
    this.#order.push(task);
    this.#stats.tasksCreated += 1;
    this.#count(this.#stats.tasksByModel, model);
    if (final === 'completed') this.#pendingMicros += spec.priceMicros;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#finish(task);
    }, latencyMs);
    this.#timers.add(timer);
    return task;
  }

  /** The task reaches its final status: a completed one is charged, a webhook is sent. */
  #finish(task: Task): void {
    if (task.finished) return;
    task.finished = true;
    if (task.final === 'completed') {
      this.#pendingMicros -= task.priceMicros;
      this.#options.balanceMicros -= task.priceMicros;
      this.#chargedMicros += task.priceMicros;
      this.#billings.push({
        uuid: randomBytes(16).toString('hex'),
        predictionId: task.id,
        model: task.model,
        priceMicros: task.priceMicros,
        createdAtMs: task.finishAtMs,
      });
    }
    if (task.webhook) void this.#sendWebhook(task, task.webhook);
  }

  #status(task: Task, now = Date.now()): string {
    if (now >= task.finishAtMs) {
      // The timer may lag under load; the status a client sees and the charge agree.
      this.#finish(task);
      return task.final;
    }
    return now >= task.processingAtMs ? 'processing' : 'created';
  }

  #view(task: Task, origin: string): Record<string, unknown> {
    const status = this.#status(task);
    const completed = status === 'completed';
    return {
      id: task.id,
      model: task.model,
      outputs: completed ? [`${origin}/outputs/${task.id}.png`] : [],
      urls: { get: `${origin}/api/v3/predictions/${task.id}/result` },
      has_nsfw_contents: completed ? [false] : [],
      status,
      created_at: new Date(task.createdAtMs).toISOString(),
      error: status === task.final && !completed ? task.error : '',
      executionTime: task.finished ? task.finishAtMs - task.createdAtMs : 0,
      timings: { inference: completed ? task.finishAtMs - task.processingAtMs : 0 },
    };
  }

  async #result(res: http.ServerResponse, rest: string, origin: string): Promise<void> {
    const id = rest.split('/')[1]!;
    const task = this.#tasks.get(id);
    const pre = await this.#preFaults('result', task?.model ?? null, res);
    if (pre.done) return;
    if (pre.delayMs > 0) await this.#sleep(pre.delayMs);
    if (!task) throw new HttpError(404, `prediction not found: ${id}`);
    this.#stats.resultReads += 1;
    task.resultReads += 1;
    this.#send(res, 200, { code: 200, message: 'success', data: this.#view(task, origin) });
  }

  async #list(req: http.IncomingMessage, res: http.ServerResponse, origin: string): Promise<void> {
    this.#stats.listCalls += 1;
    const parsed = listSchema.safeParse(await this.#readJson(req));
    if (!parsed.success) throw new HttpError(400, `invalid listing request: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const q = parsed.data;
    const pre = await this.#preFaults('list', q.model ?? null, res);
    if (pre.done) return;
    if (pre.delayMs > 0) await this.#sleep(pre.delayMs);
    const after = q.created_after ? Date.parse(q.created_after) : -Infinity;
    const before = q.created_before ? Date.parse(q.created_before) : Infinity;
    const now = Date.now();
    const matching: Task[] = [];
    for (let i = this.#order.length - 1; i >= 0; i--) {
      const t = this.#order[i]!;
      if (t.createdAtMs < after || t.createdAtMs > before) continue;
      if (q.model && t.model !== q.model) continue;
      if (q.status && this.#status(t, now) !== q.status) continue;
      matching.push(t);
    }
    const start = (q.page - 1) * q.page_size;
    const items = matching.slice(start, start + q.page_size).map((t) => this.#view(t, origin));
    this.#send(res, 200, { code: 200, message: 'success', data: { page: q.page, total: matching.length, items } });
  }

  async #balance(res: http.ServerResponse): Promise<void> {
    const pre = await this.#preFaults('balance', null, res);
    if (pre.done) return;
    this.#send(res, 200, { code: 200, message: 'success', data: { balance: usd(this.#options.balanceMicros) } });
  }

  async #billing(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const parsed = billingSearchSchema.safeParse(await this.#readJson(req));
    if (!parsed.success) throw new HttpError(400, `invalid billing search: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const q = parsed.data;
    const pre = await this.#preFaults('billing', null, res);
    if (pre.done) return;
    const ids = q.prediction_uuids ? new Set(q.prediction_uuids) : null;
    const start = q.start_time != null ? Number(q.start_time) : -Infinity;
    const end = q.end_time != null ? Number(q.end_time) : Infinity;
    let rows = this.#billings.filter(
      (b) =>
        (ids === null || ids.has(b.predictionId)) &&
        (q.billing_type == null || q.billing_type === 'deduct') &&
        b.createdAtMs >= start &&
        b.createdAtMs <= end,
    );
    if (q.sort !== 'created_at ASC') rows = [...rows].reverse();
    const from = (q.page - 1) * q.page_size;
    const items = rows.slice(from, from + q.page_size).map((b) => ({
      uuid: b.uuid,
      billing_type: 'deduct',
      price: usd(b.priceMicros),
      created_at: new Date(b.createdAtMs).toISOString(),
      updated_at: new Date(b.createdAtMs).toISOString(),
      prediction: { uuid: b.predictionId, model_uuid: b.model, status: 'completed' },
    }));
    this.#send(res, 200, { code: 200, message: 'success', data: { page: q.page, total: rows.length, items } });
  }

  async #sendWebhook(task: Task, target: string): Promise<void> {
    const body = JSON.stringify({
      id: task.id,
      model: task.model,
      input: task.input,
      outputs: task.final === 'completed' ? [`${this.url}/outputs/${task.id}.png`] : [],
      urls: { get: `${this.url}/api/v3/predictions/${task.id}/result` },
      has_nsfw_contents: task.final === 'completed' ? [false] : [],
      status: task.final,
      created_at: new Date(task.createdAtMs).toISOString(),
      error: task.error,
      executionTime: task.finishAtMs - task.createdAtMs,
    });
    const webhookId = randomBytes(12).toString('hex');
    for (let attempt = 0; attempt < 3; attempt++) {
      const timestampS = Math.floor(Date.now() / 1000);
      try {
        const response = await fetch(target, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'webhook-id': webhookId,
            'webhook-timestamp': String(timestampS),
            'webhook-signature': signWebhook(this.#options.webhookSecret, webhookId, timestampS, body),
          },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await response.arrayBuffer();
        if (response.ok) {
          this.#stats.webhooksSent += 1;
          return;
        }
      } catch {
        // Delivery is retried below, like any webhook sender.
      }
      await this.#sleep(500 * (attempt + 1));
    }
    this.#stats.webhookFailures += 1;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        resolve();
      }, ms);
      this.#timers.add(t);
    });
  }

  async #admin(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.slice('/__sim/'.length);
    if (path === 'faults' && req.method === 'POST') {
      const parsed = z.object({ rules: z.array(faultRuleSchema).min(1).max(100) }).safeParse(await this.#readJson(req));
      if (!parsed.success) throw new HttpError(400, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      this.faults.add(parsed.data.rules);
      return this.#send(res, 200, { rules: this.faults.size });
    }
    if (path === 'faults' && req.method === 'DELETE') {
      this.faults.clear();
      return this.#send(res, 200, { rules: 0 });
    }
    if (path === 'config' && req.method === 'POST') {
      const parsed = configSchema.safeParse(await this.#readJson(req));
      if (!parsed.success) throw new HttpError(400, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      const c = parsed.data;
      if (c.latencyMs !== undefined) this.#options.latencyMs = c.latencyMs;
      if (c.balanceMicros !== undefined) this.#options.balanceMicros = BigInt(c.balanceMicros);
      if (c.webhookSecret !== undefined) this.#options.webhookSecret = c.webhookSecret;
      if (c.apiKey !== undefined) this.#options.apiKey = c.apiKey;
      if (c.ratePerMin !== undefined || c.burst !== undefined) {
        if (c.ratePerMin !== undefined) this.#options.ratePerMin = c.ratePerMin;
        if (c.burst !== undefined) this.#options.burst = c.burst;
        this.#bucket = this.#makeBucket();
      }
      return this.#send(res, 200, { ok: true });
    }
    if (path === 'stats' && req.method === 'GET') return this.#send(res, 200, this.stats());
    if (path === 'tasks' && req.method === 'GET') {
      return this.#send(res, 200, {
        tasks: this.#order.map((t) => ({
          id: t.id,
          model: t.model,
          input: t.input,
          status: this.#status(t),
          resultReads: t.resultReads,
          priceMicros: t.priceMicros.toString(),
          createdAt: new Date(t.createdAtMs).toISOString(),
        })),
      });
    }
    throw new HttpError(404, 'unknown simulator control');
  }
}
