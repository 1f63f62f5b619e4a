/**
 * Reconciliation as a pure function (audit README, "reconcile"): two lists of money items keyed
 * by the external object they are about (a Stripe Checkout Session, invoice, charge or dispute;
 * a Wavespeed prediction), one from the journal and one from the outside world, compared both
 * ways. The adapters (reconcile-stripe.ts, reconcile-wavespeed.ts) only build the lists.
 */
export interface ReconItem {
  /** `purchase:cs_…`, `renewal:in_…`, `refund:ch_…`, `dispute:dp_…`, `prediction:…`. */
  key: string;
  amountMicros: bigint;
  currency: string;
  /** Where it comes from: `entry 42`, `event evt_…`, `billing 9f…`. */
  source: string;
}

export type ExceptionKind =
  /** The outside world has it (paid event, upstream charge), the journal does not. */
  | 'MISSING_IN_JOURNAL'
  /** The journal has it (Stripe-linked entry, capture with a prediction), the outside world does not. */
  | 'MISSING_EXTERNALLY'
  | 'AMOUNT_MISMATCH'
  | 'CURRENCY_MISMATCH';

export interface ReconException {
  kind: ExceptionKind;
  key: string;
  journalMicros: bigint | null;
  externalMicros: bigint | null;
  currency: string;
  journalSources: string[];
  externalSources: string[];
  message: string;
}

export interface ReconResult {
  matched: number;
  journalItems: number;
  externalItems: number;
  exceptions: ReconException[];
  /** Per currency: Σ journal and Σ external over all items. */
  totals: Map<string, { journal: bigint; external: bigint }>;
}

interface Side {
  amount: bigint;
  currency: string;
  sources: string[];
}

/** Items with the same key on one side add up (several refunds of one charge, reversals). */
function collect(items: readonly ReconItem[]): Map<string, Side> {
  const out = new Map<string, Side>();
  for (const item of items) {
    const s = out.get(item.key);
    if (s) {
      s.amount += item.amountMicros;
      s.sources.push(item.source);
      if (s.currency !== item.currency) s.currency = `${s.currency}/${item.currency}`;
    } else {
      out.set(item.key, { amount: item.amountMicros, currency: item.currency, sources: [item.source] });
    }
  }
  return out;
}

export function reconcile(journal: readonly ReconItem[], external: readonly ReconItem[], names = { journal: 'journal', external: 'external' }): ReconResult {
  const j = collect(journal);
  const x = collect(external);
  const exceptions: ReconException[] = [];
  const totals = new Map<string, { journal: bigint; external: bigint }>();
  const total = (currency: string) => {
    let t = totals.get(currency);
    if (!t) totals.set(currency, (t = { journal: 0n, external: 0n }));
    return t;
  };
  let matched = 0;
  for (const [key, js] of j) {
    total(js.currency).journal += js.amount;
    const xs = x.get(key);
    if (!xs) {
      // A journal item netted to nothing (reversed) needs no counterpart.
      if (js.amount === 0n) continue;
      exceptions.push({
        kind: 'MISSING_EXTERNALLY', key, journalMicros: js.amount, externalMicros: null, currency: js.currency,
        journalSources: js.sources, externalSources: [], message: `${names.journal} has ${key} (${js.sources.join(', ')}); ${names.external} does not`,
      });
      continue;
    }
    if (xs.amount === 0n && js.amount === 0n) {
      // Nothing paid on either side (a free period): nothing to tie out, whatever the currency.
      matched++;
    } else if (xs.currency !== js.currency) {
      exceptions.push({
        kind: 'CURRENCY_MISMATCH', key, journalMicros: js.amount, externalMicros: xs.amount, currency: `${js.currency} ≠ ${xs.currency}`,
        journalSources: js.sources, externalSources: xs.sources, message: `${key}: ${names.journal} in ${js.currency}, ${names.external} in ${xs.currency}`,
      });
    } else if (xs.amount !== js.amount) {
      exceptions.push({
        kind: 'AMOUNT_MISMATCH', key, journalMicros: js.amount, externalMicros: xs.amount, currency: js.currency,
        journalSources: js.sources, externalSources: xs.sources,
        message: `${key}: ${names.journal} ${js.amount} micros, ${names.external} ${xs.amount} micros (difference ${js.amount - xs.amount})`,
      });
    } else {
      matched++;
    }
  }
  for (const [key, xs] of x) {
    total(xs.currency).external += xs.amount;
    if (j.has(key) || xs.amount === 0n) continue;
    exceptions.push({
      kind: 'MISSING_IN_JOURNAL', key, journalMicros: null, externalMicros: xs.amount, currency: xs.currency,
      journalSources: [], externalSources: xs.sources, message: `${names.external} has ${key} (${xs.sources.join(', ')}); ${names.journal} does not`,
    });
  }
  exceptions.sort((a, b) => a.kind.localeCompare(b.kind) || a.key.localeCompare(b.key));
  return { matched, journalItems: j.size, externalItems: x.size, exceptions, totals };
}
