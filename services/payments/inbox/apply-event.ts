import { status, type ServiceError } from '@grpc/grpc-js';
import type Stripe from 'stripe';
import { Bucket, errorReason, RefundReason, type LedgerApi } from '../../ledger/client/index.js';
import type { Catalog } from '../catalog/catalog.js';

/**
 * Turns one stored Stripe event into ledger commands. Every idempotency key derives from the
 * Stripe object the event is about (never from the event id), so a redelivered, duplicated or
 * differently-typed event about the same object posts nothing twice:
 *
 * | event | command | idempotency key |
 * |---|---|---|
 * | checkout.session.completed (paid), …async_payment_succeeded | Purchase | `stripe:cs:<session id>` |
 * | invoice.paid (subscription_create / subscription_cycle) | RenewSubscription | `stripe:in:<invoice id>` |
 * | charge.refunded | Refund to the cumulative `amount_refunded` | `stripe:ch:<charge id>:refunded:<amount>` |
 * | charge.dispute.created, …closed lost | Refund (DISPUTE) of the dispute amount | `stripe:dp:<dispute id>` |
 * | charge.dispute.closed won | the dispute's Refund, then ReinstateDispute | `stripe:dp:<dispute id>:won` |
 *
 * A purchase's external_ref is its payment intent id, which charges and disputes name. The
 * requests carry only facts of the Stripe object (no event id or time), so the two events that
 * can announce the same payment produce byte-identical requests and replay each other.
 */

export type ApplyOutcome =
  | { kind: 'applied'; entryId: bigint; detail: string }
  | { kind: 'ignored'; reason: string }
  /** Transient: the ledger is unreachable or busy. Retry with backoff. */
  | { kind: 'retry'; reason: string }
  /** The purchase it refers to is not in the ledger (yet). Retry until the wait runs out. */
  | { kind: 'wait'; reason: string }
  /** Can never apply as it is. */
  | { kind: 'park'; reason: string };

export type LedgerWriter = Pick<LedgerApi, 'purchase' | 'renewSubscription' | 'refund' | 'reinstateDispute'>;

export interface ApplyDeps {
  ledger: LedgerWriter;
  catalog: Catalog;
  ledgerTimeoutMs: number;
}

/** Event types the applier handles; the inbox records every other type as IGNORED. */
export const handledTypes: ReadonlySet<string> = new Set([
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'checkout.session.async_payment_failed',
  'invoice.paid',
  'charge.refunded',
  'charge.dispute.created',
  'charge.dispute.closed',
]);

/**
 * Stripe amounts are integers in the currency's smallest unit: cents for most currencies, the
 * whole unit for zero-decimal ones (JPY, KRW, …), thousandths for three-decimal ones (BHD, …).
 * The ledger counts micro-units of the whole unit. Lists from Stripe's currency documentation.
 */
const zeroDecimal = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const threeDecimal = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

export function microsPerMinorUnit(currency: string): bigint {
  const c = currency.toUpperCase();
  if (zeroDecimal.has(c)) return 1_000_000n;
  if (threeDecimal.has(c)) return 1_000n;
  return 10_000n;
}

export async function applyStripeEvent(event: Stripe.Event, deps: ApplyDeps): Promise<ApplyOutcome> {
  try {
    switch (event.type) {
      case 'checkout.session.completed':
      case 'checkout.session.async_payment_succeeded':
        return await applyCheckout(event.data.object, event.type, deps);
      case 'checkout.session.async_payment_failed':
        return { kind: 'ignored', reason: 'the asynchronous payment failed: nothing was paid' };
      case 'invoice.paid':
        return await applyInvoicePaid(event.data.object, deps);
      case 'charge.refunded':
        return await applyChargeRefunded(event.data.object, deps);
      case 'charge.dispute.created':
        return await applyDisputeCreated(event.data.object, deps);
      case 'charge.dispute.closed':
        return await applyDisputeClosed(event.data.object, deps);
      default:
        return { kind: 'ignored', reason: `event type ${event.type} is not used` };
    }
  } catch (error) {
    if (error instanceof Park) return { kind: 'park', reason: error.message };
    return ledgerFailure(error);
  }
}

class Park extends Error {}

function park(reason: string): never {
  throw new Park(reason);
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') park(`${field} is missing`);
  return value;
}

/** A user id from metadata: what a token's `sub` may be (1–128 characters, no control characters). */
function userIdOf(value: unknown, field: string): string {
  const id = text(value, field);
  if (id.length > 128 || /[\p{Cc}\uFFFD]/u.test(id)) park(`${field} is not a valid user id`);
  return id;
}

/** An expandable field (`string | Object`) as its id. */
function idOf(value: string | { id: string } | null | undefined, field: string): string {
  if (typeof value === 'string' && value !== '') return value;
  if (value && typeof value === 'object' && typeof value.id === 'string') return value.id;
  park(`${field} is missing`);
}

/** A Stripe amount in `currency`'s smallest unit, as micros. */
function amount(value: unknown, field: string, currency: unknown): bigint {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) park(`${field} is not a non-negative integer amount`);
  return BigInt(value) * microsPerMinorUnit(text(currency, 'currency'));
}

async function applyCheckout(session: Stripe.Checkout.Session, type: string, deps: ApplyDeps): Promise<ApplyOutcome> {
  if (session.mode !== 'payment') {
    return { kind: 'ignored', reason: `a ${session.mode} session: subscription credits come with invoice.paid` };
  }
  if (session.payment_status !== 'paid') {
    return { kind: 'ignored', reason: `payment_status is ${session.payment_status}; credits follow async_payment_succeeded` };
  }
  const metadata = session.metadata ?? {};
  const userId = userIdOf(metadata.user_id, 'metadata.user_id');
  const productId = text(metadata.package_id, 'metadata.package_id');
  const product = deps.catalog.product(productId);
  if (!product) park(`package "${productId}" is not in the catalog`);
  let credits: bigint;
  const extra: Record<string, string> = {};
  if (product.kind === 'package') {
    credits = product.credits;
  } else {
    const opensAtText = metadata.lootbox_window_opens_at;
    const opensAt = typeof opensAtText === 'string' && !Number.isNaN(Date.parse(opensAtText)) ? new Date(opensAtText) : null;
    const drawn = deps.catalog.lootboxCredits(product, session.id, opensAt);
    if (drawn === null) park('metadata.lootbox_window_opens_at is missing or invalid: the lootbox draw cannot be made');
    credits = drawn;
    if (opensAt) extra.lootbox_window_opens_at = opensAt.toISOString();
  }
  const amountMicros = amount(session.amount_total, 'amount_total', session.currency);
  if (amountMicros === 0n) return { kind: 'ignored', reason: 'amount_total is 0: nothing was paid' };
  const paymentIntent = idOf(session.payment_intent, 'payment_intent');
  const r = await deps.ledger.purchase(
    {
      idempotencyKey: `stripe:cs:${session.id}`,
      userId,
      credits,
      bucket: product.kind === 'lootbox' ? Bucket.BUCKET_BONUS : Bucket.BUCKET_PURCHASED,
      amountMicros,
      currency: text(session.currency, 'currency').toUpperCase(),
      externalRef: paymentIntent,
      metadata: { stripe_checkout_session: session.id, package_id: product.id, ...extra },
    },
    { timeoutMs: deps.ledgerTimeoutMs },
  );
  return { kind: 'applied', entryId: r.entryId, detail: `${type}: ${credits} credits of ${product.id} for ${userId}${r.replayed ? ' (replayed)' : ''}` };
}

async function applyInvoicePaid(invoice: Stripe.Invoice, deps: ApplyDeps): Promise<ApplyOutcome> {
  if (invoice.billing_reason !== 'subscription_create' && invoice.billing_reason !== 'subscription_cycle') {
    return { kind: 'ignored', reason: `billing_reason ${invoice.billing_reason}: only subscription_create and subscription_cycle grant credits` };
  }
  const details = invoice.parent?.subscription_details;
  if (!details) park('parent.subscription_details is missing');
  const metadata = details.metadata ?? {};
  const userId = userIdOf(metadata.user_id, 'parent.subscription_details.metadata.user_id');
  const planId = text(metadata.plan_id, 'parent.subscription_details.metadata.plan_id');
  const plan = deps.catalog.plan(planId);
  if (!plan) park(`plan "${planId}" is not in the catalog`);
  // The period the credits are for is the subscription line's (the invoice's own period_* is
  // the previous period for a renewal).
  const lines = invoice.lines?.data ?? [];
  const line = lines.find((l) => l.parent?.type === 'subscription_item_details') ?? lines[0];
  if (!line?.period) park('lines.data[0].period is missing');
  if (!Number.isSafeInteger(line.period.start) || !Number.isSafeInteger(line.period.end) || line.period.end <= line.period.start) {
    park('the invoice line period is not a valid range');
  }
  const amountMicros = amount(invoice.amount_paid, 'amount_paid', invoice.currency);
  const subscriptionId = idOf(details.subscription, 'parent.subscription_details.subscription');
  const r = await deps.ledger.renewSubscription(
    {
      idempotencyKey: `stripe:in:${invoice.id}`,
      userId,
      plan: plan.id,
      periodStart: new Date(line.period.start * 1000),
      periodEnd: new Date(line.period.end * 1000),
      credits: plan.monthlyCredits,
      // A free period (trial, 100% coupon) grants the credits with no money and no reference.
      amountMicros,
      currency: amountMicros === 0n ? '' : text(invoice.currency, 'currency').toUpperCase(),
      externalRef: amountMicros === 0n ? '' : text(invoice.id, 'id'),
      metadata: { stripe_invoice: text(invoice.id, 'id'), stripe_subscription: subscriptionId, billing_reason: invoice.billing_reason },
    },
    { timeoutMs: deps.ledgerTimeoutMs },
  );
  return { kind: 'applied', entryId: r.entryId, detail: `renewed ${plan.id} for ${userId}, expired ${r.expiredCredits}` };
}

async function applyChargeRefunded(charge: Stripe.Charge, deps: ApplyDeps): Promise<ApplyOutcome> {
  const refunded = amount(charge.amount_refunded, 'amount_refunded', charge.currency);
  if (refunded === 0n) return { kind: 'ignored', reason: 'amount_refunded is 0' };
  const paymentIntent = idOf(charge.payment_intent, 'payment_intent');
  try {
    const r = await deps.ledger.refund(
      {
        idempotencyKey: `stripe:ch:${charge.id}:refunded:${charge.amount_refunded}`,
        externalRef: paymentIntent,
        refundedMicrosTarget: refunded,
        reason: RefundReason.REFUND_REASON_REFUND,
        metadata: { stripe_charge: charge.id },
      },
      { timeoutMs: deps.ledgerTimeoutMs },
    );
    return { kind: 'applied', entryId: r.entryId, detail: `refunded to ${r.refundedMicrosTotal} micros, clawed back ${r.clawedBackCredits}` };
  } catch (error) {
    if (errorReason(error as ServiceError) === 'ALREADY_REFUNDED') {
      return { kind: 'applied', entryId: 0n, detail: `refunds of ${paymentIntent} already reach ${refunded} micros` };
    }
    throw error;
  }
}

function disputeRefund(dispute: Stripe.Dispute, deps: ApplyDeps) {
  const paymentIntent = idOf(dispute.payment_intent, 'payment_intent');
  return deps.ledger.refund(
    {
      idempotencyKey: `stripe:dp:${dispute.id}`,
      externalRef: paymentIntent,
      amountMicros: amount(dispute.amount, 'amount', dispute.currency),
      reason: RefundReason.REFUND_REASON_DISPUTE,
      metadata: { stripe_dispute: dispute.id, stripe_charge: idOf(dispute.charge, 'charge') },
    },
    { timeoutMs: deps.ledgerTimeoutMs },
  );
}

/** Inquiries (`warning_*`) withdraw no funds, so they claw nothing back. */
const isInquiry = (dispute: Stripe.Dispute) => dispute.status.startsWith('warning_');

async function applyDisputeCreated(dispute: Stripe.Dispute, deps: ApplyDeps): Promise<ApplyOutcome> {
  if (isInquiry(dispute)) return { kind: 'ignored', reason: `an inquiry (${dispute.status}): no funds were withdrawn` };
  const r = await disputeRefund(dispute, deps);
  return { kind: 'applied', entryId: r.entryId, detail: `dispute clawed back ${r.clawedBackCredits} credits (shortfall ${r.shortfallCredits})` };
}

async function applyDisputeClosed(dispute: Stripe.Dispute, deps: ApplyDeps): Promise<ApplyOutcome> {
  if (isInquiry(dispute)) return { kind: 'ignored', reason: `an inquiry closed (${dispute.status})` };
  if (dispute.status === 'lost') {
    // Normally a replay of the created event's refund; if that event was lost or is late, this
    // claws back now and the created event replays later.
    const r = await disputeRefund(dispute, deps);
    return { kind: 'applied', entryId: r.entryId, detail: `dispute lost: clawback stays (${r.clawedBackCredits} credits)` };
  }
  if (dispute.status !== 'won') return { kind: 'ignored', reason: `dispute closed with status ${dispute.status}` };
  // The dispute's refund first (a replay when created was applied), so that a won dispute
  // whose created event comes later still nets to nothing; then its reinstatement.
  const clawback = await disputeRefund(dispute, deps);
  try {
    const r = await deps.ledger.reinstateDispute(
      { idempotencyKey: `stripe:dp:${dispute.id}:won`, entryId: clawback.entryId },
      { timeoutMs: deps.ledgerTimeoutMs },
    );
    return { kind: 'applied', entryId: r.entryId, detail: `dispute won: ${r.reinstatedCredits} credits reinstated` };
  } catch (error) {
    if (errorReason(error as ServiceError) === 'ALREADY_REVERSED') {
      return { kind: 'applied', entryId: 0n, detail: 'dispute won: reinstated already' };
    }
    throw error;
  }
}

/** What a ledger error means for the event: wait, retry, or park. */
function ledgerFailure(error: unknown): ApplyOutcome {
  const e = error as Partial<ServiceError>;
  if (typeof e.code !== 'number') return { kind: 'retry', reason: `unexpected error: ${(error as Error).message}` };
  const reason = errorReason(e as ServiceError);
  const message = `${status[e.code] ?? e.code}${reason ? ` ${reason}` : ''}: ${e.details ?? e.message}`;
  switch (e.code) {
    case status.NOT_FOUND:
      return { kind: 'wait', reason: message };
    case status.INVALID_ARGUMENT:
    case status.ALREADY_EXISTS:
    case status.FAILED_PRECONDITION:
    case status.OUT_OF_RANGE:
      return { kind: 'park', reason: message };
    default:
      // UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, and also UNAUTHENTICATED /
      // PERMISSION_DENIED (a credential an operator fixes): keep the event and try again.
      return { kind: 'retry', reason: message };
  }
}
