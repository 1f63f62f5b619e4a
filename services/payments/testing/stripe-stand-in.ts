import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { checkoutSession, deliverEvent, event, invoice, stripeId } from './stripe-objects.js';

/**
 * A local stand-in for the parts of Stripe's REST API this service calls, following Stripe's
 * documented contract: form-encoded requests with bracketed keys, `Authorization: Bearer
 * sk_…`, JSON objects and `{error: {type, message, param}}` errors. Reached by the real
 * `stripe` library through STRIPE_API_URL.
 *
 *   POST /v1/checkout/sessions        create a Checkout Session (mode payment or subscription)
 *   GET  /v1/checkout/sessions/:id    retrieve it
 *   GET  /c/pay/:id                   the hosted checkout page the session's `url` points to
 *
 * It also plays Stripe's side after checkout: `complete()` marks a session paid and returns
 * the events Stripe would send, and `deliver()` posts them to a webhook URL, signed with the
 * endpoint secret by Stripe's own `generateTestHeaderString`.
 */

export interface StandInSession {
  session: Record<string, unknown>;
  /** subscription_data.metadata of a subscription session. */
  subscriptionMetadata: Record<string, string> | null;
}

export interface StripeStandIn {
  url: string;
  sessions: Map<string, StandInSession>;
  /** Requests received, for assertions (method, path, parsed form). */
  requests: { method: string; path: string; form: Record<string, unknown> }[];
  /**
   * Completes a session as a paying customer would: payment sessions become paid (with a payment
   * intent and charge); subscription sessions create a subscription and its first paid invoice.
   * Returns the events Stripe sends for it, in Stripe's order.
   */
  complete(sessionId: string, options?: { periodStart?: Date }): { events: Stripe.Event[]; paymentIntent: string | null; chargeId: string | null; subscription: string | null };
  /** Posts events to a webhook endpoint, signed as Stripe signs them. */
  deliver(webhookUrl: string, secret: string, events: readonly Stripe.Event[]): Promise<number[]>;
  /** Makes the next `n` API calls fail with a 500 (Stripe outage). */
  failNext(n: number): void;
  close(): Promise<void>;
}

/** Parses `a[b][0][c]=v` form bodies into nested objects and arrays, as Stripe reads them. */
export function parseStripeForm(body: string): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [rawKey, value] of new URLSearchParams(body)) {
    const path = rawKey.split(/\[|\]\[|\]/).filter((p, i) => p !== '' || i === 0);
    let node: Record<string, unknown> | unknown[] = root;
    for (let i = 0; i < path.length; i += 1) {
      const key = path[i]!;
      const last = i === path.length - 1;
      const nextIsIndex = !last && /^\d+$/.test(path[i + 1]!);
      const slot = Array.isArray(node) ? Number(key) : key;
      const container = node as Record<string | number, unknown>;
      if (last) container[slot] = value;
      else {
        container[slot] ??= nextIsIndex ? [] : {};
        node = container[slot] as Record<string, unknown> | unknown[];
      }
    }
  }
  return root;
}

const secretKeyPattern = /^Bearer (sk|rk)_test_\w+$/;

export interface StandInOptions {
  /**
   * Where "Pay" on the hosted checkout page delivers the events (a local checkout for `npm
   * start`): the payments service's webhook URL and its endpoint secret. Without it the page
   * only shows the session, and tests complete sessions themselves.
   */
  webhook?: { url: string; secret: string };
  /** Listen port (0, the default, lets the OS pick). */
  port?: number;
}

export async function startStripeStandIn(standIn: StandInOptions = {}): Promise<StripeStandIn> {
  const sessions = new Map<string, StandInSession>();
  const requests: StripeStandIn['requests'] = [];
  const stripe = new Stripe('sk_test_stand_in_signer');
  let failures = 0;
  let base = '';

  const send = (res: ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json', 'request-id': `req_${randomBytes(8).toString('hex')}`, 'stripe-version': '2026-10-28.endive' });
    res.end(JSON.stringify(body));
  };
  const fail = (res: ServerResponse, code: number, type: string, message: string, param?: string) =>
    send(res, code, { error: { type, message, ...(param ? { param } : {}) } });

  const createSession = (form: Record<string, unknown>, res: ServerResponse) => {
    const mode = form.mode;
    if (mode !== 'payment' && mode !== 'subscription') return fail(res, 400, 'invalid_request_error', 'Invalid mode: must be one of payment, setup, or subscription', 'mode');
    const items = form.line_items;
    if (!Array.isArray(items) || items.length === 0) return fail(res, 400, 'invalid_request_error', 'Missing required param: line_items.', 'line_items');
    let amountTotal = 0;
    let currency: string | null = null;
    for (const [i, raw] of items.entries()) {
      const item = raw as { quantity?: string; price_data?: { currency?: string; unit_amount?: string; product_data?: { name?: string }; recurring?: { interval?: string } } };
      const unit = Number(item.price_data?.unit_amount);
      const quantity = Number(item.quantity ?? '1');
      if (!Number.isInteger(unit) || unit < 0) return fail(res, 400, 'invalid_request_error', 'Invalid integer: unit_amount', `line_items[${i}][price_data][unit_amount]`);
      if (!item.price_data?.product_data?.name) return fail(res, 400, 'invalid_request_error', 'Missing required param: product_data[name].', `line_items[${i}][price_data][product_data][name]`);
      if (mode === 'subscription' && !item.price_data.recurring?.interval) {
        return fail(res, 400, 'invalid_request_error', 'You must specify `recurring` for a price in subscription mode.', `line_items[${i}][price_data][recurring]`);
      }
      currency = item.price_data.currency ?? null;
      amountTotal += unit * quantity;
    }
    const id = stripeId('cs');
    const session = checkoutSession({
      id,
      mode,
      amountTotal,
      currency: currency ?? 'usd',
      metadata: (form.metadata as Record<string, string>) ?? {},
      clientReferenceId: typeof form.client_reference_id === 'string' ? form.client_reference_id : null,
      url: `${base}/c/pay/${id}`,
      successUrl: typeof form.success_url === 'string' ? form.success_url : null,
      cancelUrl: typeof form.cancel_url === 'string' ? form.cancel_url : null,
    });
    const subscriptionData = form.subscription_data as { metadata?: Record<string, string> } | undefined;
    sessions.set(id, { session, subscriptionMetadata: mode === 'subscription' ? (subscriptionData?.metadata ?? {}) : null });
    send(res, 200, session);
  };

  const checkoutPage = (id: string, res: ServerResponse) => {
    const s = sessions.get(id)?.session;
    if (!s) {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<h1>Checkout session not found</h1>');
      return;
    }
    const total = Number(s.amount_total);
    const paid = s.payment_status === 'paid';
    const payForm =
      standIn.webhook && !paid
        ? `<form method="post" action="/c/pay/${id}"><button type="submit" data-testid="pay">Pay</button></form>`
        : paid
          ? '<p data-testid="paid">Paid.</p>'
          : '';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><title>Checkout</title></head><body>
      <h1 data-testid="checkout-title">Stripe Checkout (stand-in)</h1>
      <p>Session <code data-testid="session-id">${id}</code></p>
      <p>Pay <strong data-testid="amount">${(total / 100).toFixed(2)} ${String(s.currency).toUpperCase()}</strong></p>
      ${payForm}
      </body></html>`);
  };

  /** "Pay": completes the session as Stripe would, delivers its signed events, returns to the shop. */
  const pay = async (id: string, res: ServerResponse) => {
    const entry = sessions.get(id);
    if (!standIn.webhook || !entry) {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<h1>Checkout session not found</h1>');
      return;
    }
    if (entry.session.payment_status !== 'paid') {
      const { events } = handle.complete(id);
      await handle.deliver(standIn.webhook.url, standIn.webhook.secret, events);
    }
    const back = typeof entry.session.success_url === 'string' ? entry.session.success_url.replace('{CHECKOUT_SESSION_ID}', id) : `/c/pay/${id}`;
    res.writeHead(303, { location: back });
    res.end();
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in');
      const body = Buffer.concat(chunks).toString('utf8');
      const form = req.method === 'POST' ? parseStripeForm(body) : Object.fromEntries(url.searchParams);
      requests.push({ method: req.method ?? '', path: url.pathname, form });
      const page = /^\/c\/pay\/(cs_[\w]+)$/.exec(url.pathname);
      if (req.method === 'GET' && page) return checkoutPage(page[1]!, res);
      if (req.method === 'POST' && page) {
        pay(page[1]!, res).catch((error: unknown) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`delivering the webhooks failed: ${(error as Error).message}`);
        });
        return;
      }
      if (!secretKeyPattern.test(req.headers.authorization ?? '')) {
        return fail(res, 401, 'invalid_request_error', 'Invalid API Key provided.');
      }
      if (failures > 0) {
        failures -= 1;
        return fail(res, 500, 'api_error', 'An unknown error occurred (stand-in outage).');
      }
      if (req.method === 'POST' && url.pathname === '/v1/checkout/sessions') return createSession(form, res);
      const get = /^\/v1\/checkout\/sessions\/(cs_\w+)$/.exec(url.pathname);
      if (req.method === 'GET' && get) {
        const s = sessions.get(get[1]!);
        return s ? send(res, 200, s.session) : fail(res, 404, 'invalid_request_error', `No such checkout.session: '${get[1]}'`, 'id');
      }
      fail(res, 404, 'invalid_request_error', `Unrecognized request URL (${req.method}: ${url.pathname}).`);
    });
  });
  await new Promise<void>((resolve) => server.listen(standIn.port ?? 0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const handle: StripeStandIn = {
    url: base,
    sessions,
    requests,
    complete(sessionId, options = {}) {
      const entry = sessions.get(sessionId);
      if (!entry) throw new Error(`stand-in: no session ${sessionId}`);
      const s = entry.session;
      const now = Math.floor(Date.now() / 1000);
      if (s.mode === 'payment') {
        const paymentIntent = stripeId('pi');
        const chargeId = stripeId('ch');
        Object.assign(s, { status: 'complete', payment_status: 'paid', payment_intent: paymentIntent });
        return { events: [event('checkout.session.completed', { ...s })], paymentIntent, chargeId, subscription: null };
      }
      const subscription = stripeId('sub');
      Object.assign(s, { status: 'complete', payment_status: 'paid', subscription });
      const start = Math.floor((options.periodStart?.getTime() ?? now * 1000) / 1000);
      const end = Math.floor(Date.UTC(new Date(start * 1000).getUTCFullYear(), new Date(start * 1000).getUTCMonth() + 1, new Date(start * 1000).getUTCDate()) / 1000);
      const first = invoice({ amountPaid: Number(s.amount_total), currency: String(s.currency), billingReason: 'subscription_create', subscription, metadata: entry.subscriptionMetadata, periodStart: start, periodEnd: end });
      return { events: [event('checkout.session.completed', { ...s }), event('invoice.paid', first)], paymentIntent: null, chargeId: null, subscription };
    },
    async deliver(webhookUrl, secret, events) {
      const codes: number[] = [];
      for (const e of events) codes.push((await deliverEvent(webhookUrl, stripe, secret, e)).status);
      return codes;
    },
    failNext(n) {
      failures = n;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return handle;
}

