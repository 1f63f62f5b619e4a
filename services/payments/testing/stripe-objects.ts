import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';

/**
 * Stripe objects and events in the shapes of API version 2026-10-28.endive (the version the
 * installed `stripe` package pins; field names from its types), for tests, the Stripe
 * stand-in and the bench. Only fields Stripe documents are used; values are test-mode ones.
 */

export const apiVersion = '2026-10-28.endive';

export const stripeId = (prefix: string) => `${prefix}_test_${randomBytes(12).toString('hex')}`;

type Obj = Record<string, unknown>;

export function event(type: string, object: Obj, options: { id?: string; created?: number; previousAttributes?: Obj } = {}): Stripe.Event {
  return {
    id: options.id ?? stripeId('evt'),
    object: 'event',
    api_version: apiVersion,
    created: options.created ?? Math.floor(Date.now() / 1000),
    data: { object, ...(options.previousAttributes ? { previous_attributes: options.previousAttributes } : {}) },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  } as unknown as Stripe.Event;
}

export interface CheckoutSessionInput {
  id?: string;
  mode?: 'payment' | 'subscription';
  amountTotal: number;
  currency?: string;
  metadata: Record<string, string>;
  clientReferenceId?: string | null;
  paymentIntent?: string | null;
  paymentStatus?: 'paid' | 'unpaid' | 'no_payment_required';
  status?: 'open' | 'complete' | 'expired';
  subscription?: string | null;
  url?: string | null;
  successUrl?: string | null;
  cancelUrl?: string | null;
  created?: number;
}

export function checkoutSession(s: CheckoutSessionInput): Obj {
  const created = s.created ?? Math.floor(Date.now() / 1000);
  return {
    id: s.id ?? stripeId('cs'),
    object: 'checkout.session',
    adaptive_pricing: { enabled: false },
    after_expiration: null,
    allow_promotion_codes: null,
    amount_subtotal: s.amountTotal,
    amount_total: s.amountTotal,
    automatic_tax: { enabled: false, liability: null, provider: null, status: null },
    billing_address_collection: null,
    cancel_url: s.cancelUrl ?? null,
    client_reference_id: s.clientReferenceId ?? null,
    client_secret: null,
    collected_information: null,
    consent: null,
    consent_collection: null,
    created,
    currency: s.currency ?? 'usd',
    currency_conversion: null,
    custom_fields: [],
    custom_text: { after_submit: null, shipping_address: null, submit: null, terms_of_service_acceptance: null },
    customer: null,
    customer_account: null,
    customer_creation: 'if_required',
    customer_details: null,
    customer_email: null,
    discounts: [],
    expires_at: created + 86_400,
    integration_identifier: null,
    invoice: null,
    invoice_creation: null,
    livemode: false,
    locale: null,
    managed_payments: null,
    metadata: s.metadata,
    mode: s.mode ?? 'payment',
    origin_context: null,
    payment_intent: s.paymentIntent ?? null,
    payment_link: null,
    payment_method_collection: 'if_required',
    payment_method_configuration_details: null,
    payment_method_options: {},
    payment_method_types: ['card'],
    payment_status: s.paymentStatus ?? 'unpaid',
    permissions: null,
    recovered_from: null,
    saved_payment_method_options: null,
    setup_intent: null,
    shipping_address_collection: null,
    shipping_cost: null,
    shipping_options: [],
    status: s.status ?? 'open',
    submit_type: null,
    subscription: s.subscription ?? null,
    success_url: s.successUrl ?? null,
    total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: 'hosted',
    url: s.url ?? null,
    wallet_options: null,
  };
}

export interface InvoiceInput {
  id?: string;
  amountPaid: number;
  currency?: string;
  billingReason: 'subscription_create' | 'subscription_cycle' | 'manual' | 'subscription_update';
  subscription: string;
  metadata: Record<string, string> | null;
  /** The subscription line's service period (unix seconds). */
  periodStart: number;
  periodEnd: number;
  customer?: string;
}

export function invoice(i: InvoiceInput): Obj {
  const id = i.id ?? stripeId('in');
  return {
    id,
    object: 'invoice',
    account_country: 'US',
    account_name: 'Credit Ledger Test',
    amount_due: i.amountPaid,
    amount_overpaid: 0,
    amount_paid: i.amountPaid,
    amount_remaining: 0,
    amount_shipping: 0,
    attempt_count: 1,
    attempted: true,
    auto_advance: false,
    billing_reason: i.billingReason,
    collection_method: 'charge_automatically',
    created: i.periodStart,
    currency: i.currency ?? 'usd',
    customer: i.customer ?? 'cus_test_1',
    description: null,
    hosted_invoice_url: null,
    lines: {
      object: 'list',
      data: [
        {
          id: stripeId('il'),
          object: 'line_item',
          amount: i.amountPaid,
          currency: i.currency ?? 'usd',
          description: '1 × Pro Monthly',
          discount_amounts: [],
          discountable: true,
          discounts: [],
          invoice: id,
          livemode: false,
          metadata: {},
          parent: {
            type: 'subscription_item_details',
            invoice_item_details: null,
            subscription_item_details: { invoice_item: null, proration: false, proration_details: { credited_items: null }, subscription: i.subscription, subscription_item: stripeId('si') },
          },
          period: { start: i.periodStart, end: i.periodEnd },
          pretax_credit_amounts: [],
          pricing: null,
          quantity: 1,
          subtotal: i.amountPaid,
          taxes: [],
        },
      ],
      has_more: false,
      url: `/v1/invoices/${id}/lines`,
    },
    livemode: false,
    metadata: {},
    number: null,
    parent: {
      type: 'subscription_details',
      quote_details: null,
      subscription_details: { metadata: i.metadata, subscription: i.subscription },
    },
    // For a renewal Stripe's invoice period is the one that just ended; the line has the new one.
    period_end: i.periodStart,
    period_start: i.billingReason === 'subscription_cycle' ? i.periodStart - (i.periodEnd - i.periodStart) : i.periodStart,
    status: 'paid',
    status_transitions: { finalized_at: i.periodStart, marked_uncollectible_at: null, paid_at: i.periodStart, voided_at: null },
    subtotal: i.amountPaid,
    total: i.amountPaid,
  };
}

export interface ChargeInput {
  id?: string;
  amount: number;
  amountRefunded: number;
  currency?: string;
  paymentIntent: string;
}

export function charge(c: ChargeInput): Obj {
  return {
    id: c.id ?? stripeId('ch'),
    object: 'charge',
    amount: c.amount,
    amount_captured: c.amount,
    amount_refunded: c.amountRefunded,
    balance_transaction: stripeId('txn'),
    captured: true,
    created: Math.floor(Date.now() / 1000),
    currency: c.currency ?? 'usd',
    customer: null,
    description: null,
    disputed: false,
    livemode: false,
    metadata: {},
    paid: true,
    payment_intent: c.paymentIntent,
    payment_method: stripeId('pm'),
    refunded: c.amountRefunded === c.amount,
    status: 'succeeded',
  };
}

export interface DisputeInput {
  id?: string;
  amount: number;
  currency?: string;
  charge: string;
  paymentIntent: string;
  status: 'needs_response' | 'under_review' | 'won' | 'lost' | 'warning_needs_response' | 'warning_closed';
}

export function dispute(d: DisputeInput): Obj {
  return {
    id: d.id ?? stripeId('dp'),
    object: 'dispute',
    amount: d.amount,
    balance_transactions: [],
    charge: d.charge,
    created: Math.floor(Date.now() / 1000),
    currency: d.currency ?? 'usd',
    enhanced_eligibility_types: [],
    evidence: {},
    evidence_details: { due_by: null, has_evidence: false, past_due: false, submission_count: 0 },
    is_charge_refundable: false,
    livemode: false,
    metadata: {},
    payment_intent: d.paymentIntent,
    reason: 'fraudulent',
    status: d.status,
  };
}

/** Signs a payload as Stripe does, with Stripe's own test helper. */
export function signedHeader(stripe: Stripe, payload: string, secret: string, timestampSeconds?: number): string {
  return stripe.webhooks.generateTestHeaderString({ payload, secret, ...(timestampSeconds === undefined ? {} : { timestamp: timestampSeconds }) });
}

/** Delivers an event to a webhook URL the way Stripe does: JSON body, Stripe-Signature header. */
export async function deliverEvent(url: string, stripe: Stripe, secret: string, evt: Stripe.Event | string, timestampSeconds?: number): Promise<Response> {
  const payload = typeof evt === 'string' ? evt : JSON.stringify(evt, null, 2);
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signedHeader(stripe, payload, secret, timestampSeconds), 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)' },
    body: payload,
  });
}
