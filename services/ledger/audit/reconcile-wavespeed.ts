import type pg from 'pg';
import type { ReconItem } from './reconcile.js';

/**
 * `reconcile wavespeed`: captures and consumes that name an upstream prediction against what
 * Wavespeed charged, both ways.
 *
 * The contract this adapter relies on:
 * - The worker's Capture/Consume carries `upstream` = {amount_micros, currency, request_id =
 *   the Wavespeed prediction id, model}; the ledger records it in the entry's metadata as
 *   `upstream.amount_micros`, `upstream.currency`, `upstream.request_id`, `upstream.model` and
 *   books the cost `upstream.wavespeed.cost.<CUR>` → `…payable.<CUR>`. The journal amount is that
 *   transfer (a reversed capture nets to zero).
 * - Wavespeed's billing listing, `POST {base}/api/v3/billings/search` with a bearer key and
 *   `{page, page_size ≤ 100, start_time, end_time (epoch ms), sort: "created_at ASC"}`, answers
 *   `{code, data: {page, total, items: [{uuid, billing_type: "deduct", price (USD), created_at,
 *   prediction: {uuid, model_uuid}}]}}`: one item per charged (completed) prediction. Prices are
 *   dollars as JSON numbers; they are converted to micros by rounding to the nearest micro.
 */

/** The journal side: entries that name an upstream prediction, with the cost they booked. */
export async function wavespeedJournalItems(pool: pg.Pool, period: { from: Date | null; to: Date | null }): Promise<ReconItem[]> {
  // Inputs: the period. Locks: none. Output: per capture/consume (and reversal of one) that
  // names a prediction, the upstream cost it booked, signed so a reversal nets it out.
  const { rows } = await pool.query<{ seq: string; prediction: string; unit: string | null; amount: string | null }>(
    `WITH named AS (
       SELECT e.seq, COALESCE(e.metadata->>'upstream.request_id', o.metadata->>'upstream.request_id') AS prediction
         FROM entries e LEFT JOIN entries o ON o.seq = e.reverses_seq
        WHERE ($1::timestamptz IS NULL OR e.recorded_at >= $1) AND ($2::timestamptz IS NULL OR e.recorded_at < $2)
          AND (e.metadata ? 'upstream.request_id' OR o.metadata ? 'upstream.request_id')
     )
     SELECT n.seq::text, n.prediction, MAX(t.unit) AS unit,
            SUM(CASE WHEN d.code LIKE 'upstream.wavespeed.cost.%' THEN t.amount
                     WHEN c.code LIKE 'upstream.wavespeed.cost.%' THEN -t.amount ELSE 0 END)::text AS amount
       FROM named n
       LEFT JOIN transfers t ON t.entry_seq = n.seq AND t.unit <> 'CREDIT'
       LEFT JOIN accounts d ON d.id = t.debit_account_id
       LEFT JOIN accounts c ON c.id = t.credit_account_id
      WHERE n.prediction IS NOT NULL AND n.prediction <> ''
      GROUP BY n.seq, n.prediction`,
    [period.from?.toISOString() ?? null, period.to?.toISOString() ?? null],
  );
  return rows.map((r) => ({ key: `prediction:${r.prediction}`, amountMicros: BigInt(r.amount ?? '0'), currency: r.unit ?? 'USD', source: `entry ${r.seq}` }));
}

export interface WavespeedListingOptions {
  baseUrl: string;
  apiKey: string;
  from: Date | null;
  to: Date | null;
  /** Bound on the pages fetched (100 items each). */
  pagesMax?: number;
  timeoutMs?: number;
}

interface BillingItem {
  uuid: string;
  billing_type: string;
  price: number;
  created_at: string;
  prediction?: { uuid?: string; model_uuid?: string };
}

/** The Wavespeed side: every charge in the period, from its billing listing. */
export async function wavespeedBillingItems(options: WavespeedListingOptions): Promise<ReconItem[]> {
  const items: ReconItem[] = [];
  const pagesMax = options.pagesMax ?? 10_000;
  for (let page = 1; page <= pagesMax; page++) {
    const response = await fetch(new URL('/api/v3/billings/search', options.baseUrl), {
      method: 'POST',
      headers: { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        page,
        page_size: 100,
        sort: 'created_at ASC',
        ...(options.from ? { start_time: options.from.getTime() } : {}),
        ...(options.to ? { end_time: options.to.getTime() - 1 } : {}),
      }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    if (!response.ok) throw new Error(`Wavespeed billing listing: HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
    const body = (await response.json()) as { data?: { total?: number; items?: BillingItem[] } };
    const batch = body.data?.items ?? [];
    for (const b of batch) {
      if (b.billing_type !== 'deduct' || !b.prediction?.uuid) continue;
      items.push({
        key: `prediction:${b.prediction.uuid}`,
        amountMicros: BigInt(Math.round(b.price * 1_000_000)),
        currency: 'USD',
        source: `billing ${b.uuid}`,
      });
    }
    if (batch.length < 100 || page * 100 >= (body.data?.total ?? 0)) return items;
  }
  throw new Error(`Wavespeed billing listing: more than ${pagesMax} pages; narrow the period with --from/--to`);
}
