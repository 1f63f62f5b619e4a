import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../services/testing/otlp-receiver.js';
import { openEnhancementProducer } from '../services/worker/producer.js';
import { startTestSystem, type RunningSystem, type TestSystem } from './testing/npm-start.js';

// OpenTelemetry traces across the services, exported to a local OTLP receiver: a Stripe webhook
// and the ledger Purchase it leads to share a trace (through the inbox's stored traceparent), and
// an enhancement job, its ledger calls and its Wavespeed calls share the producer's trace.

describe('traces across HTTP → gRPC → BullMQ → Wavespeed', () => {
  let receiver: OtlpReceiver;
  let t: TestSystem;
  let system: RunningSystem;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    t = await startTestSystem('tracing-e2e', { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    system = t.system;
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
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
    const payments = String(system.ready.payments);
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
    const producer = await openEnhancementProducer(String(system.ready.redis), String(system.ready.queuePrefix));
    try {
      const outcome = await producer.run(
        { requestId: 'trace-req-1', userId: 'tracer', model: 'wavespeed-ai/image-upscaler', input: { image: 'https://example.test/a.png', target_resolution: '4k' }, traceparent },
        60_000,
      );
      expect(outcome.ok).toBe(true);
    } finally {
      await producer.close();
    }
    const job = await waitFor('enhancement', () => receiver.spans.find((s) => s.name === 'enhancement' && s.traceId === traceId));
    expect(job.attributes['enhancement.request_id']).toBe('trace-req-1');
    for (const rpc of ['Reserve', 'Capture']) {
      await waitFor(`ledger ${rpc}`, () => receiver.spans.find((s) => s.name === `credits.ledger.v1.LedgerService/${rpc}` && s.kind === 2 && s.traceId === traceId));
    }
    await waitFor('wavespeed submit', () => receiver.spans.find((s) => s.name.startsWith('wavespeed POST /api/v3/') && s.traceId === traceId));
  });
});
