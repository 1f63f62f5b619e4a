import { randomBytes } from 'node:crypto';
import { QueueEvents, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { Bucket, createLedgerClient, type LedgerClient } from '../../ledger/client/index.js';
import { createLogger } from '../../lib/logger.js';
import type { FlowTimings } from '../config.js';
import { createEnhancementWorker, type EnhancementWorker } from '../enhancement-worker.js';
import type { EnhancementJobData, EnhancementRequest, EnhancementResult } from '../job-types.js';
import { LedgerGateway } from '../ledger-gateway.js';
import { createWorkerMetrics, type WorkerMetrics } from '../metrics.js';
import { loadModelTable } from '../models.js';
import { PredictionClaims } from '../prediction-claims.js';
import { SubmitRateLimiter } from '../submit-rate-limiter.js';
import { createEnhancementQueue, createQueueEvents, enqueueEnhancement, type EnhancementQueue } from '../producer.js';
import { WavespeedClient } from '../wavespeed-client.js';
import { WebhookInbox, webhookPath } from '../webhook-inbox.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real enhancement worker in the test process, on real Redis under a key prefix of its own
 * (so test files never see each other's queues), talking to a real ledger and the simulator.
 */

export const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Short timings so a test's waits are seconds, not minutes. */
export const testTimings: FlowTimings = {
  holdTtlMs: 30_000,
  pollInitialMs: 200,
  pollIntervalMs: 150,
  pollMaxMs: 1_000,
  predictionTimeoutMs: 60_000,
  ledgerRetryMs: 30_000,
  submitTimeoutMs: 2_000,
};

export function testPrefix(name: string): string {
  return `test-${name}-${randomBytes(4).toString('hex')}`;
}

export interface WorkerHarnessOptions {
  prefix: string;
  ledgerAddress: string;
  ledgerToken: string;
  simulatorUrl: string;
  apiKey: string;
  timings?: Partial<FlowTimings>;
  concurrency?: number;
  ratePerMin?: number | null;
  /** Start consuming at once (default) or leave it to the test. */
  start?: boolean;
  /** Receive Wavespeed's webhooks on 127.0.0.1:0 and pass their URL with each submit. */
  webhooks?: boolean;
}

export interface WorkerHarness {
  prefix: string;
  queue: EnhancementQueue;
  events: QueueEvents;
  redis: Redis;
  metrics: WorkerMetrics;
  claims: PredictionClaims;
  /** The webhook receiver's URL, when `webhooks` was asked for. */
  webhookUrl: string | null;
  enhancement: EnhancementWorker | null;
  startWorker(): EnhancementWorker;
  enqueue(request: EnhancementRequest): Promise<Job<EnhancementJobData, EnhancementResult>>;
  /** Waits for a job to complete or fail (polling its state), and returns it. */
  finished(jobId: string, timeoutMs?: number): Promise<Job<EnhancementJobData, EnhancementResult>>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function startWorkerHarness(o: WorkerHarnessOptions): Promise<WorkerHarness> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = createEnhancementQueue(redis, o.prefix);
  const eventsConnection = redis.duplicate();
  const events = createQueueEvents(eventsConnection, o.prefix);
  await events.waitUntilReady();
  const metrics = createWorkerMetrics({ defaults: false });
  const claims = new PredictionClaims(redis, o.prefix);
  const log = createLogger('worker-test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const ledgerClient: LedgerClient = createLedgerClient(o.ledgerAddress, o.ledgerToken);
  const timings = { ...testTimings, ...o.timings };
  const wavespeed = new WavespeedClient({ baseUrl: o.simulatorUrl, apiKey: o.apiKey, submitTimeoutMs: timings.submitTimeoutMs, readTimeoutMs: 5_000 });
  let webhooks: WebhookInbox | null = null;
  let receiver: http.Server | null = null;
  if (o.webhooks) {
    const server = http.createServer((req, res) => {
      if (req.method === 'POST' && req.url?.split('?')[0] === webhookPath && webhooks) void webhooks.handle(req, res);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    receiver = server;
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${webhookPath}`;
    webhooks = new WebhookInbox(redis, o.prefix, url, await wavespeed.webhookSecret());
  }
  const harness: WorkerHarness = {
    prefix: o.prefix,
    queue,
    events,
    redis,
    metrics,
    claims,
    webhookUrl: webhooks ? webhooks.urlFor('x', 1).split('?')[0]! : null,
    enhancement: null,
    startWorker() {
      const enhancement = createEnhancementWorker({
        connection: redis,
        prefix: o.prefix,
        concurrency: o.concurrency ?? 20,
        ratePerMin: o.ratePerMin ?? null,
        lockMs: 5_000,
        stalledIntervalMs: 2_000,
        log,
        deps: {
          ledger: new LedgerGateway(ledgerClient, metrics, timings.ledgerRetryMs),
          wavespeed,
          models: loadModelTable(),
          claims,
          metrics,
          log,
          timings,
          submitLimiter: o.ratePerMin ? new SubmitRateLimiter(redis, o.prefix, o.ratePerMin) : null,
          webhooks,
        },
      });
      harness.enhancement = enhancement;
      return enhancement;
    },
    enqueue: (request) => enqueueEnhancement(queue, request),
    async finished(jobId, timeoutMs = 45_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const job = await queue.getJob(jobId);
        // A snapshot read while the job was active lacks its result: read it again once the
        // job's state says it finished.
        if (job && ['completed', 'failed'].includes(await job.getState())) return (await queue.getJob(jobId))!;
        if (Date.now() > deadline) throw new Error(`job ${jobId} not finished after ${timeoutMs} ms (state ${await job?.getState()})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async metric(name, labels = {}) {
      const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
      const values = (metric?.values ?? []) as { value: number; labels: Record<string, string | number> }[];
      return values
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .reduce((sum, v) => sum + v.value, 0);
    },
    async close() {
      await harness.enhancement?.close(0);
      if (receiver) {
        receiver.closeAllConnections();
        await new Promise<void>((r) => receiver!.close(() => r()));
      }
      await events.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      // Claims and orphans live beside the queue under the same prefix.
      const stream = redis.scanStream({ match: `${o.prefix}:*`, count: 500 });
      for await (const keys of stream as AsyncIterable<string[]>) if (keys.length) await redis.del(...keys);
      await queue.close();
      ledgerClient.close();
      wavespeed.close();
      redis.disconnect();
      eventsConnection.disconnect();
    },
  };
  if (o.start ?? true) harness.startWorker();
  return harness;
}

/** The model the worker tests enhance with (the default table's upscaler). */
export const testModel = 'wavespeed-ai/image-upscaler';

const uniqueId = () => randomBytes(6).toString('hex');

/** A fresh user holding `credits` purchased credits. */
export async function grantedUser(admin: Pick<LedgerClient, 'grant'>, credits: bigint): Promise<string> {
  const userId = `u-${uniqueId()}`;
  await admin.grant({ idempotencyKey: `grant-${uniqueId()}`, userId, credits, bucket: Bucket.BUCKET_PURCHASED });
  return userId;
}

/** An enhancement request with a fresh requestId and an image URL of its own. */
export function enhancementRequest(userId: string, input: Record<string, unknown> = {}): EnhancementRequest {
  const requestId = `req-${uniqueId()}`;
  return { requestId, userId, model: testModel, input: { image: `https://img.example/${requestId}.png`, target_resolution: '4k', ...input } };
}
