import Stripe from 'stripe';
import type { ReconItem } from './reconcile.js';

/**
 * `reconcile stripe` with `STRIPE_SECRET_KEY`: the money Stripe's balance says moved in the
 * period, tied out against the journal by category and currency. Stripe's balance transactions
 * (`GET /v1/balance_transactions`, listed with Stripe's own client, paged to the end) carry no
 * Checkout Session or invoice id, so the tie-out is of totals:
 *
 * - `charges`: transactions of type `charge` or `payment` (gross `amount`, before Stripe's fee,
 *   which is the platform's cost and not in the ledger) against purchases and renewals;
 * - `refunds`: types `refund` and `payment_refund` (negative amounts; their opposite) against
 *   refunds that are not disputes;
 * - `disputes`: reporting category `dispute` (funds withdrawn) less `dispute_reversal` (returned)
 *   against dispute refunds.
 *
 * Amounts are in the currency's minor unit; like the payments service, this assumes two-decimal
 * currencies (cents × 10 000 = micros).
 */
export interface StripeBalanceOptions {
  secretKey: string;
  /** `https://api.stripe.com`, or a local stand-in in tests. */
  apiBase: string;
  from: Date | null;
  to: Date | null;
  /** Bound on the transactions read. */
  transactionsMax?: number;
}

const microsPerCent = 10_000n;

export async function stripeBalanceTotals(options: StripeBalanceOptions): Promise<ReconItem[]> {
  const base = new URL(options.apiBase);
  const stripe = new Stripe(options.secretKey, {
    host: base.hostname,
    port: base.port || (base.protocol === 'http:' ? 80 : 443),
    protocol: base.protocol === 'http:' ? 'http' : 'https',
    maxNetworkRetries: 2,
    timeout: 30_000,
  });
  const created: Stripe.RangeQueryParam = {};
  if (options.from) created.gte = Math.floor(options.from.getTime() / 1000);
  if (options.to) created.lt = Math.ceil(options.to.getTime() / 1000);
  const totals = new Map<string, { amount: bigint; count: number }>();
  const add = (category: string, currency: string, cents: bigint) => {
    const key = `balance:${category}:${currency.toUpperCase()}`;
    const t = totals.get(key) ?? { amount: 0n, count: 0 };
    t.amount += cents * microsPerCent;
    t.count++;
    totals.set(key, t);
  };
  const max = options.transactionsMax ?? 1_000_000;
  let read = 0;
  for await (const tx of stripe.balanceTransactions.list({ limit: 100, ...(options.from || options.to ? { created } : {}) })) {
    if (++read > max) throw new Error(`more than ${max} balance transactions; narrow the period with --from/--to`);
    const amount = BigInt(tx.amount);
    if (tx.type === 'charge' || tx.type === 'payment') add('charges', tx.currency, amount);
    else if (tx.type === 'refund' || tx.type === 'payment_refund') add('refunds', tx.currency, -amount);
    else if (tx.reporting_category === 'dispute' || tx.reporting_category === 'dispute_reversal') add('disputes', tx.currency, -amount);
  }
  return [...totals].map(([key, t]) => ({ key, amountMicros: t.amount, currency: key.split(':')[2]!, source: `${t.count} balance transaction(s)` }));
}

/** The journal's Stripe-linked items (stripeJournalItems) as the same category totals. */
export function journalBalanceTotals(items: readonly ReconItem[]): ReconItem[] {
  const totals = new Map<string, { amount: bigint; count: number; currency: string }>();
  for (const item of items) {
    const kind = item.key.slice(0, item.key.indexOf(':'));
    const category = kind === 'purchase' || kind === 'renewal' ? 'charges' : kind === 'refund' ? 'refunds' : kind === 'dispute' ? 'disputes' : null;
    if (category === null || item.currency === '') continue;
    const key = `balance:${category}:${item.currency}`;
    const t = totals.get(key) ?? { amount: 0n, count: 0, currency: item.currency };
    t.amount += item.amountMicros;
    t.count++;
    totals.set(key, t);
  }
  return [...totals].map(([key, t]) => ({ key, amountMicros: t.amount, currency: t.currency, source: `${t.count} entr${t.count === 1 ? 'y' : 'ies'}` }));
}
