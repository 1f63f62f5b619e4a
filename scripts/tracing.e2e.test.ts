import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testCredentials } from '../services/ledger/testing/ledger-harness.js';
import { createTestRoles, type TestRoles } from '../services/ledger/testing/ledger-roles.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../services/testing/otlp-receiver.js';
import { createTestDatabase, type TestDatabase } from '../services/testing/test-db.js';
import { createEnhancementQueue, createQueueEvents, runEnhancement } from '../services/worker/producer.js';
import { startSystem, type RunningSystem } from './testing/npm-start.js';

// OpenTelemetry traces across the services, exported to a local OTLP receiver: a Stripe webhook
// and the ledger Purchase it leads to share a trace (through the inbox's stored traceparent), and
// an enhancement job, its ledger calls and its Wavespeed calls share the producer's trace.

describe('traces across HTTP → gRPC → BullMQ → Wavespeed', () => {
  let db: TestDatabase;
  let roles: TestRoles;
  let dataDir: string;
  let receiver: OtlpReceiver;
  let system: RunningSystem | null = null;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    db = await createTestDatabase();
    roles = await createTestRoles(db.url);
    dataDir = await mkdtemp(path.join(tmpdir(), 'tracing-e2e-'));
    system = await startSystem({
      DATABASE_URL: roles.urlAs(roles.app, db.url),
      DATABASE_MIGRATION_URL: roles.urlAs(roles.owner, db.url),
      PAYMENTS_DATABASE_URL: db.url,
      PAYMENTS_HTTP_ADDR: '127.0.0.1:0',
      PAYMENTS_APPLY_PERIOD_MS: '100',
      LEDGER_CREDENTIALS: JSON.stringify(testCredentials()),
      LEDGER_GRPC_ADDR: '127.0.0.1:0',
      LEDGER_METRICS_ADDR: '127.0.0.1:0',
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      WORKER_QUEUE_PREFIX: `trace-${process.pid}-${Date.now()}`,
      WORKER_METRICS_ADDR: '127.0.0.1:0',
      WAVESPEED_SIM_LATENCY_MS: '200',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      DATA_DIR: dataDir,
    });
  });
  afterAll(async () => {
    if (system) {
      system.child.kill('SIGTERM');
      await Promise.race([system.exited, new Promise((r) => setTimeout(r, 15_000))]);
      system.kill();
    }
    await receiver?.close();
    await db?.drop();
    await roles?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const waitFor = async (what: string, find: () => ReceivedSpan | undefined): Promise<ReceivedSpan> => {
    for (let i = 0; i < 100; i += 1) {
      const span = find();
      if (span) return span;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no span: ${what}; received ${receiver.spans.map((s) => s.name).join(', ')}`);
  };

  it('a webhook and the Purchase it leads to share a trace, with the Stripe event id on the spans', async () => {
    const payments = String(system!.ready.payments);
    const signIn = await fetch(`${payments}/dev/sign-in?user_id=tracer`, { redirect: 'manual' });
    const token = /access_token=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')![1]!;
    const bought = (await (
      await fetch(`${payments}/api/credits/purchase`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ packageId: 'starter-pack' }),
      })
    ).json()) as { url: string };
    expect((await fetch(bought.url, { method: 'POST', redirect: 'manual' })).status).toBe(303);

    const webhook = await waitFor('webhook', () => receiver.spans.find((s) => s.name === 'POST /webhooks/stripe' && s.attributes['stripe.event_type'] === 'checkout.session.completed'));
    expect(webhook.attributes['stripe.event_id']).toMatch(/^evt_/);
    const apply = await waitFor('apply', () => receiver.spans.find((s) => s.name === 'apply checkout.session.completed' && s.traceId === webhook.traceId));
    expect(apply.attributes['stripe.event_id']).toBe(webhook.attributes['stripe.event_id']);
    const purchase = await waitFor('ledger Purchase', () =>
      receiver.spans.find((s) => s.name === 'credits.ledger.v1.LedgerService/Purchase' && s.kind === 2 && s.traceId === webhook.traceId),
    );
    expect(purchase.attributes['rpc.grpc.status_code']).toBe(0);
  });

  it('an enhancement job continues its producer trace through the ledger and Wavespeed', async () => {
    const traceId = randomBytes(16).toString('hex');
    const traceparent = `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
    const redis = new Redis(String(system!.ready.redis), { maxRetriesPerRequest: null });
    const queue = createEnhancementQueue(redis, String(system!.ready.queuePrefix));
    const events = createQueueEvents(redis.duplicate(), String(system!.ready.queuePrefix));
    try {
      const outcome = await runEnhancement(
        queue,
        events,
        { requestId: 'trace-req-1', userId: 'tracer', model: 'wavespeed-ai/image-upscaler', input: { image: 'https://example.test/a.png', target_resolution: '4k' }, traceparent },
        60_000,
      );
      expect(outcome.ok).toBe(true);
    } finally {
      await queue.close();
      await events.close();
      await redis.quit();
    }
    const job = await waitFor('enhancement', () => receiver.spans.find((s) => s.name === 'enhancement' && s.traceId === traceId));
    expect(job.attributes['enhancement.request_id']).toBe('trace-req-1');
    for (const rpc of ['Reserve', 'Capture']) {
      await waitFor(`ledger ${rpc}`, () => receiver.spans.find((s) => s.name === `credits.ledger.v1.LedgerService/${rpc}` && s.kind === 2 && s.traceId === traceId));
    }
    await waitFor('wavespeed submit', () => receiver.spans.find((s) => s.name.startsWith('wavespeed POST /api/v3/') && s.traceId === traceId));
  });
});
