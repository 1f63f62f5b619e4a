import type pg from 'pg';
import type { ReconItem } from './reconcile.js';

/**
 * `reconcile stripe`: the payments service's webhook inbox (`payments.stripe_events`, read with
 * SQL: the audit imports nothing of the payments service) against the journal, both ways.
 *
 * The contract this adapter relies on (payments README; services/payments/inbox/apply-event.ts):
 * - Inbox rows: `event_id`, `type`, `object_id`, `payload` (the Stripe event as received),
 *   `stripe_created_at`, `status`.
 * - A paid Checkout Session (`checkout.session.completed` with `payment_status = paid`, or
 *   `checkout.session.async_payment_succeeded`; `mode = payment`, `amount_total > 0`) is a
 *   Purchase whose metadata has `stripe_checkout_session`; amounts in cents × 10 000.
 * - `invoice.paid` with `billing_reason` subscription_create / subscription_cycle is a
 *   RenewSubscription whose metadata has `stripe_invoice`; amount `amount_paid`.
 * - `charge.refunded` carries the cumulative `amount_refunded`: the journal's refunds with
 *   `stripe_charge` (and no `stripe_dispute`) must add up to the largest one seen.
 * - `charge.dispute.created` (not an inquiry, `warning_*`) or `…closed` with status `lost` is a
 *   Refund with reason DISPUTE whose metadata has `stripe_dispute`; amount `amount`.
 * Journal amounts are the money the entry moved: for purchases and renewals the transfer out of
 * `stripe.clearing.<CUR>`, for refunds what went into `refunds.<CUR>`; a reversed entry counts
 * with its reversal (so it nets to zero).
 */

const microsPerCent = 10_000n;

/** Whether the payments inbox exists in this database. */
export async function paymentsInboxExists(pool: pg.Pool): Promise<boolean> {
  // Inputs: none. Locks: none. Output: whether the table exists.
  const { rows } = await pool.query<{ t: string | null }>(`SELECT to_regclass('payments.stripe_events')::text AS t`);
  return rows[0]?.t !== null && rows[0]?.t !== undefined;
}

interface EventRow {
  event_id: string;
  type: string;
  object_id: string;
  payload: { data?: { object?: Record<string, unknown> } };
}

/** The Stripe side: what the inbox says was paid, refunded or disputed. */
export async function stripeInboxItems(pool: pg.Pool, period: { from: Date | null; to: Date | null }): Promise<ReconItem[]> {
  // Inputs: the period. Locks: none. Output: the inbox's money events in it.
  const { rows } = await pool.query<EventRow>(
    `SELECT event_id, type, object_id, payload FROM payments.stripe_events
      WHERE type IN ('checkout.session.completed', 'checkout.session.async_payment_succeeded', 'invoice.paid',
                     'charge.refunded', 'charge.dispute.created', 'charge.dispute.closed')
        AND ($1::timestamptz IS NULL OR stripe_created_at >= $1) AND ($2::timestamptz IS NULL OR stripe_created_at < $2)
      ORDER BY stripe_created_at, event_id`,
    [period.from?.toISOString() ?? null, period.to?.toISOString() ?? null],
  );
  // One item per Stripe object: the events announcing one payment (completed, then
  // async_payment_succeeded; redeliveries) are one payment; refunds are cumulative.
  const byKey = new Map<string, ReconItem>();
  const put = (key: string, cents: unknown, currency: unknown, event: string, cumulative = false) => {
    if (typeof cents !== 'number' || !Number.isSafeInteger(cents)) return;
    const amount = BigInt(cents) * microsPerCent;
    const item: ReconItem = { key, amountMicros: amount, currency: String(currency ?? '').toUpperCase(), source: `event ${event}` };
    const earlier = byKey.get(key);
    if (!earlier || (cumulative && amount > earlier.amountMicros)) byKey.set(key, item);
  };
  for (const e of rows) {
    const o = e.payload?.data?.object ?? {};
    switch (e.type) {
      case 'checkout.session.completed':
      case 'checkout.session.async_payment_succeeded':
        if (o.mode === 'payment' && o.payment_status === 'paid' && Number(o.amount_total) > 0) put(`purchase:${String(o.id)}`, o.amount_total, o.currency, e.event_id);
        break;
      case 'invoice.paid':
        if (o.billing_reason === 'subscription_create' || o.billing_reason === 'subscription_cycle') put(`renewal:${String(o.id)}`, o.amount_paid, o.currency, e.event_id);
        break;
      case 'charge.refunded':
        if (Number(o.amount_refunded) > 0) put(`refund:${String(o.id)}`, o.amount_refunded, o.currency, e.event_id, true);
        break;
      case 'charge.dispute.created':
      case 'charge.dispute.closed': {
        const status = String(o.status ?? '');
        if (status.startsWith('warning_')) break;
        if (e.type === 'charge.dispute.closed' && status !== 'lost') break;
        put(`dispute:${String(o.id)}`, o.amount, o.currency, e.event_id);
        break;
      }
    }
  }
  return [...byKey.values()];
}

/** The journal side: every Stripe-linked entry, with the money it moved. */
export async function stripeJournalItems(pool: pg.Pool, period: { from: Date | null; to: Date | null }): Promise<ReconItem[]> {
  // Inputs: the period. Locks: none. Output: Stripe-linked purchases, renewals and refunds
  // recorded in it (and reversals of them), with the money each moved through
  // stripe.clearing (in) or refunds (out), signed so that a reversal nets its original out.
  const { rows } = await pool.query<{ seq: string; kind: string; key: string | null; unit: string | null; amount: string | null }>(
    `WITH linked AS (
       SELECT e.seq, e.kind, e.seq AS origin,
              CASE
                WHEN e.kind = 'PURCHASE' AND e.metadata ? 'stripe_checkout_session' THEN 'purchase:' || (e.metadata->>'stripe_checkout_session')
                WHEN e.kind = 'RENEW_SUBSCRIPTION' AND e.metadata ? 'stripe_invoice' THEN 'renewal:' || (e.metadata->>'stripe_invoice')
                WHEN e.kind = 'REFUND' AND e.metadata ? 'stripe_dispute' THEN 'dispute:' || (e.metadata->>'stripe_dispute')
                WHEN e.kind = 'REFUND' AND e.metadata ? 'stripe_charge' THEN 'refund:' || (e.metadata->>'stripe_charge')
                WHEN e.idempotency_key LIKE 'stripe:%' THEN 'unlinked:' || e.idempotency_key
              END AS key
         FROM entries e
        WHERE ($1::timestamptz IS NULL OR e.recorded_at >= $1) AND ($2::timestamptz IS NULL OR e.recorded_at < $2)
          AND (e.kind IN ('PURCHASE', 'RENEW_SUBSCRIPTION', 'REFUND') OR e.reverses_seq IS NOT NULL)
     ), keyed AS (
       SELECT l.seq, l.kind, COALESCE(l.key, o.key) AS key
         FROM linked l LEFT JOIN entries r ON r.seq = l.seq
         LEFT JOIN LATERAL (
           SELECT CASE
                    WHEN x.kind = 'PURCHASE' AND x.metadata ? 'stripe_checkout_session' THEN 'purchase:' || (x.metadata->>'stripe_checkout_session')
                    WHEN x.kind = 'RENEW_SUBSCRIPTION' AND x.metadata ? 'stripe_invoice' THEN 'renewal:' || (x.metadata->>'stripe_invoice')
                    WHEN x.kind = 'REFUND' AND x.metadata ? 'stripe_dispute' THEN 'dispute:' || (x.metadata->>'stripe_dispute')
                    WHEN x.kind = 'REFUND' AND x.metadata ? 'stripe_charge' THEN 'refund:' || (x.metadata->>'stripe_charge')
                  END AS key
             FROM entries x WHERE x.seq = r.reverses_seq) o ON true
     )
     SELECT k.seq::text, k.kind, k.key, m.unit,
            SUM(CASE
                  WHEN d.code LIKE 'stripe.clearing.%' THEN t.amount
                  WHEN c.code LIKE 'stripe.clearing.%' THEN -t.amount
                  WHEN c.code LIKE 'refunds.%' THEN t.amount
                  WHEN d.code LIKE 'refunds.%' THEN -t.amount
                  ELSE 0 END)::text AS amount
       FROM keyed k
       LEFT JOIN transfers t ON t.entry_seq = k.seq AND t.unit <> 'CREDIT'
       LEFT JOIN accounts d ON d.id = t.debit_account_id
       LEFT JOIN accounts c ON c.id = t.credit_account_id
       LEFT JOIN LATERAL (SELECT t.unit) m ON true
      WHERE k.key IS NOT NULL
      GROUP BY k.seq, k.kind, k.key, m.unit`,
    [period.from?.toISOString() ?? null, period.to?.toISOString() ?? null],
  );
  return rows
    .filter((r) => r.unit !== null || r.kind === 'RENEW_SUBSCRIPTION')
    .map((r) => ({ key: r.key!, amountMicros: BigInt(r.amount ?? '0'), currency: r.unit ?? '', source: `entry ${r.seq}` }));
}
