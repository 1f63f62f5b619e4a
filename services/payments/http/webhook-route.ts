import { contextFrom, currentTraceparent, inSpan, SpanKind } from '../../lib/tracing.js';
import type { FastifyInstance } from 'fastify';
import type Stripe from 'stripe';
import type { Clock } from '../../lib/clock.js';
import { handledTypes } from '../inbox/apply-event.js';
import type { InboxWriter } from '../inbox/inbox-writer.js';
import type { PaymentsMetrics } from '../metrics.js';

export interface WebhookDeps {
  stripe: Stripe;
  webhookSecret: string;
  writer: InboxWriter;
  clock: Clock;
  metrics: PaymentsMetrics;
  /** Told when an event was stored, so it is applied at once. */
  onStored: () => void;
}

/** Stripe's own limit on event payloads is far below this; anything larger is not from Stripe. */
export const webhookBodyMaxBytes = 1024 * 1024;

/**
 * POST /webhooks/stripe: verify the signature on the raw body with Stripe's library (default
 * tolerance, against the service clock), store the event in the inbox (once per event id),
 * answer 2xx. Nothing is applied here; nothing is stored unless the signature verified.
 */
export async function registerWebhookRoute(app: FastifyInstance, deps: WebhookDeps): Promise<void> {
  await app.register(async (scope) => {
    // This scope reads every body as raw bytes: the signature covers them exactly.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: webhookBodyMaxBytes }, (_req, body, done) => done(null, body));

    scope.post('/webhooks/stripe', { bodyLimit: webhookBodyMaxBytes }, (request, reply) =>
      // A span per delivery, continuing the sender's trace if it sent one; the event's id and
      // type are set on it once the signature is verified.
      inSpan('payments', 'POST /webhooks/stripe', { kind: SpanKind.SERVER, parent: contextFrom(headerOf(request.headers.traceparent)) }, async (span) => {
      const end = deps.metrics.webhookAckSeconds.startTimer();
      const raw = request.body;
      const signature = request.headers['stripe-signature'];
      if (!Buffer.isBuffer(raw) || raw.length === 0) {
        deps.metrics.webhooksReceived.inc({ type: 'unknown', outcome: 'rejected' });
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'body: a Stripe event is required' });
      }
      if (typeof signature !== 'string' || signature === '') {
        deps.metrics.webhooksReceived.inc({ type: 'unknown', outcome: 'rejected' });
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'stripe-signature: header is missing' });
      }
      let event: Stripe.Event;
      try {
        event = deps.stripe.webhooks.constructEvent(raw, signature, deps.webhookSecret, undefined, undefined, deps.clock.now().getTime());
      } catch (error) {
        deps.metrics.webhooksReceived.inc({ type: 'unknown', outcome: 'rejected' });
        request.log.warn({ reason: (error as Error).message }, 'webhook signature rejected');
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `stripe-signature: ${(error as Error).message}` });
      }
      if (typeof event.id !== 'string' || !/^evt_[A-Za-z0-9_]{1,250}$/.test(event.id) || typeof event.type !== 'string' || typeof event.data?.object !== 'object' || event.data.object === null) {
        deps.metrics.webhooksReceived.inc({ type: 'unknown', outcome: 'rejected' });
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'body: not a Stripe event (id, type, data.object)' });
      }
      // Some event objects have no id (balance.available, …); those are recorded all the same.
      const objectId = (event.data.object as { id?: unknown }).id;
      const object = { id: typeof objectId === 'string' ? objectId : '' };
      span.setAttributes({ 'stripe.event_id': event.id, 'stripe.event_type': event.type, 'stripe.object_id': object.id });
      const log = request.log.child({ stripe_event_id: event.id, event_type: event.type, stripe_object_id: object.id });
      const stored = await deps.writer.store(
        {
          eventId: event.id,
          type: event.type,
          objectId: object.id,
          livemode: event.livemode === true,
          apiVersion: typeof event.api_version === 'string' ? event.api_version : null,
          createdAt: new Date((Number.isSafeInteger(event.created) ? event.created : 0) * 1000),
          payload: storablePayload(raw.toString('utf8')),
          traceparent: currentTraceparent(),
        },
        handledTypes.has(event.type) ? 'PENDING' : 'IGNORED',
      );
      deps.metrics.webhooksReceived.inc({ type: event.type, outcome: stored ? 'stored' : 'duplicate' });
      log.info({ duplicate: !stored }, stored ? 'webhook stored' : 'webhook already stored');
      if (stored && handledTypes.has(event.type)) deps.onStored();
      end();
      return reply.code(200).send({ received: true, duplicate: !stored });
    }));
  });
}

const headerOf = (value: string | string[] | undefined): string | null => (typeof value === 'string' ? value : null);

/**
 * PostgreSQL's jsonb cannot hold the character U+0000. A verified event whose JSON contains the
 * escape `\u0000` (an odd number of backslashes before `u0000`) is stored with U+FFFD in its
 * place, so the event is kept and applied (or parked) like any other instead of failing the
 * delivery for ever.
 */
export function storablePayload(json: string): string {
  return json.includes('\\u0000') ? json.replace(/(?<!\\)((?:\\\\)*)\\u0000/g, '$1\\ufffd') : json;
}
