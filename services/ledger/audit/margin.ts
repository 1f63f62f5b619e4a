import type pg from 'pg';
import { readJournalPages, walkClient } from './db-source.js';
import type { JournalRow } from './journal-row.js';
import { csvField, fmt, table } from './trial-balance.js';

/**
 * Margin from the journal alone (audit README, "margin"): for each group (day, model or
 * package) and currency, the revenue recognised as credits were spent, the breakage recognised
 * as credits expired (less what refunds took back out of either), the upstream cost booked by
 * captures and consumes (less reversals), and margin = revenue + breakage − cost. The seed's
 * "your cost vs your price", exact to the micro: the groups add up to the movements of the
 * `revenue.recognized`, `revenue.breakage` and `upstream.wavespeed.cost` accounts over the
 * period.
 *
 * Attribution: revenue and breakage go to the lot whose deferred revenue they came from (its
 * package: the purchase's `package_id`, `plan:<plan>` for a subscription, `grant` for free
 * credits); an entry's upstream cost is split over the lots it drew from in proportion to the
 * credits (largest remainder, so the split is exact); the model is the entry's `upstream.model`.
 * A reversal counts against the group of the entry it reverses.
 */
export type MarginGroupBy = 'day' | 'model' | 'package';

export interface MarginRow {
  group: string;
  currency: string;
  revenueMicros: bigint;
  breakageMicros: bigint;
  costMicros: bigint;
  marginMicros: bigint;
  /** Credits spent (posted to platform.credits_consumed), less reversals. */
  credits: bigint;
}

export interface MarginReport {
  by: MarginGroupBy;
  from: Date | null;
  to: Date | null;
  fromSeq: bigint;
  toSeq: bigint;
  rows: MarginRow[];
  totals: MarginRow[];
}

interface LotInfo {
  package: string;
}

export async function marginReport(
  pool: pg.Pool,
  options: { by: MarginGroupBy; from: Date | null; to: Date | null; onProgress?: (done: number, total: number) => void },
): Promise<MarginReport> {
  const client = await walkClient(pool);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // Inputs: none. Locks: none. Output: the platform accounts the report reads, by code.
    const platform = await client.query<{ id: string; code: string; unit: string }>(`SELECT id::text, code, unit FROM accounts WHERE kind = 'PLATFORM'`);
    const role = new Map<string, { role: 'revenue' | 'breakage' | 'cost' | 'consumed'; currency: string }>();
    for (const a of platform.rows) {
      if (a.code.startsWith('revenue.recognized.')) role.set(a.id, { role: 'revenue', currency: a.unit });
      else if (a.code.startsWith('revenue.breakage.')) role.set(a.id, { role: 'breakage', currency: a.unit });
      else if (a.code.startsWith('upstream.wavespeed.cost.')) role.set(a.id, { role: 'cost', currency: a.unit });
      else if (a.code === 'platform.credits_consumed') role.set(a.id, { role: 'consumed', currency: 'CREDIT' });
    }
    // Inputs: none. Locks: none. Output: the entries that created lots, with the lots they
    // journaled and their metadata (the package bought), from the journal alone.
    const lotsByAccount = new Map<string, LotInfo>();
    const creators = await client.query<{ seq: string; kind: string; metadata: Record<string, string>; lots: Record<string, unknown>[] }>(
      `SELECT seq::text, kind, metadata, lots FROM entries WHERE kind IN ('GRANT', 'PURCHASE', 'RENEW_SUBSCRIPTION') AND lots IS NOT NULL`,
    );
    for (const e of creators.rows) {
      for (const lot of e.lots) {
        if (lot.entry_seq !== e.seq) continue;
        const info = {
          package: e.metadata.package_id ?? (lot.plan ? `plan:${String(lot.plan)}` : e.kind === 'GRANT' ? 'grant' : String(lot.bucket).toLowerCase()),
        };
        lotsByAccount.set(String(lot.account_id), info);
        if (lot.deferred_account_id) lotsByAccount.set(String(lot.deferred_account_id), info);
      }
    }
    // Inputs: the period. Locks: none. Output: the entries recorded in it, as a seq range.
    const range = await client.query<{ lo: string | null; hi: string | null }>(
      `SELECT MIN(seq)::text AS lo, MAX(seq)::text AS hi FROM entries
        WHERE ($1::timestamptz IS NULL OR recorded_at >= $1) AND ($2::timestamptz IS NULL OR recorded_at < $2)`,
      [options.from?.toISOString() ?? null, options.to?.toISOString() ?? null],
    );
    const fromSeq = BigInt(range.rows[0]!.lo ?? '1');
    const toSeq = BigInt(range.rows[0]!.hi ?? '0');
    const groups = new Map<string, MarginRow>();
    const row = (group: string, currency: string): MarginRow => {
      const key = `${currency}|${group}`;
      let r = groups.get(key);
      if (!r) {
        r = { group, currency, revenueMicros: 0n, breakageMicros: 0n, costMicros: 0n, marginMicros: 0n, credits: 0n };
        groups.set(key, r);
      }
      return r;
    };
    const originals = new Map<string, JournalRow>();
    let done = 0;
    const total = Number(toSeq - fromSeq + 1n);
    if (toSeq >= fromSeq) {
      for await (const page of readJournalPages(client, fromSeq, toSeq, 2_000)) {
        // Reversals count against their original entry's model and lots: fetch those it names.
        const wanted = page.filter((e) => e.kind === 'REVERSE' && e.reverses_seq !== null && !originals.has(e.reverses_seq)).map((e) => e.reverses_seq!);
        if (wanted.length > 0) {
          // Inputs: entry seqs. Locks: none. Output: their metadata and allocation.
          const found = await client.query<{ seq: string; metadata: Record<string, string>; allocation: unknown; result: unknown }>(
            'SELECT seq::text, metadata, allocation, result FROM entries WHERE seq = ANY($1::bigint[])',
            [wanted],
          );
          for (const o of found.rows) originals.set(o.seq, o as unknown as JournalRow);
        }
        for (const e of page) attribute(e, e.kind === 'REVERSE' && e.reverses_seq ? originals.get(e.reverses_seq) : undefined);
        done += page.length;
        options.onProgress?.(done, total);
      }
    }
    await client.query('COMMIT');

    function attribute(e: JournalRow, original: JournalRow | undefined): void {
      const source = original ?? e;
      const meta = (source.metadata ?? {}) as Record<string, string>;
      const lotOf = (account: string) => lotsByAccount.get(account)?.package ?? (meta.lot_id ? lotsByAccount.get(meta.lot_id)?.package : undefined) ?? '(unknown lot)';
      const groupFor = (account: string | null) => {
        if (options.by === 'day') return e.recorded_at.slice(0, 10);
        if (options.by === 'model') return meta['upstream.model'] ?? '(no model)';
        return account === null ? '(no lot)' : lotOf(account);
      };
      const allocation = allocationOf(source);
      for (const t of e.transfers) {
        if (t.kind !== 'POSTED' && t.kind !== 'POST_PENDING') continue;
        const amount = BigInt(t.amount);
        const credit = role.get(t.credit_account_id);
        const debit = role.get(t.debit_account_id);
        if (credit?.role === 'revenue') row(groupFor(t.debit_account_id), credit.currency).revenueMicros += amount;
        if (debit?.role === 'revenue') row(groupFor(t.credit_account_id), debit.currency).revenueMicros -= amount;
        if (credit?.role === 'breakage') row(groupFor(t.debit_account_id), credit.currency).breakageMicros += amount;
        if (debit?.role === 'breakage') row(groupFor(t.credit_account_id), debit.currency).breakageMicros -= amount;
        if (credit?.role === 'consumed') row(groupFor(t.debit_account_id), '').credits += amount;
        if (debit?.role === 'consumed') row(groupFor(t.credit_account_id), '').credits -= amount;
        const cost = debit?.role === 'cost' ? amount : credit?.role === 'cost' ? -amount : 0n;
        if (cost !== 0n) {
          const currency = (debit?.role === 'cost' ? debit : credit)!.currency;
          if (options.by !== 'package' || allocation.length === 0) {
            row(groupFor(null), currency).costMicros += cost;
          } else {
            for (const [lot, share] of split(cost, allocation)) row(lotOf(lot), currency).costMicros += share;
          }
        }
      }
    }

    // Credits carry no currency: they are shown on the rows of the group's money.
    const rows = [...groups.values()];
    const creditRows = rows.filter((r) => r.currency === '');
    const moneyRows = rows.filter((r) => r.currency !== '');
    for (const c of creditRows) {
      const target = moneyRows.find((r) => r.group === c.group) ?? (moneyRows.push({ ...c, currency: '—', credits: 0n }), moneyRows[moneyRows.length - 1]!);
      if (target !== c) target.credits += c.credits;
    }
    for (const r of moneyRows) r.marginMicros = r.revenueMicros + r.breakageMicros - r.costMicros;
    moneyRows.sort((a, b) =>
      a.currency !== b.currency ? a.currency.localeCompare(b.currency) : options.by === 'day' ? a.group.localeCompare(b.group) : Number(b.revenueMicros + b.breakageMicros - (a.revenueMicros + a.breakageMicros)),
    );
    const totals = new Map<string, MarginRow>();
    for (const r of moneyRows) {
      const t = totals.get(r.currency) ?? { group: 'TOTAL', currency: r.currency, revenueMicros: 0n, breakageMicros: 0n, costMicros: 0n, marginMicros: 0n, credits: 0n };
      t.revenueMicros += r.revenueMicros;
      t.breakageMicros += r.breakageMicros;
      t.costMicros += r.costMicros;
      t.marginMicros += r.marginMicros;
      t.credits += r.credits;
      totals.set(r.currency, t);
    }
    return { by: options.by, from: options.from, to: options.to, fromSeq, toSeq, rows: moneyRows, totals: [...totals.values()] };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

function allocationOf(e: JournalRow): [string, bigint][] {
  const list = (Array.isArray(e.allocation) ? e.allocation : ((e.result as Record<string, unknown> | null)?.allocation ?? [])) as { lot_id: string; credits: string }[];
  return Array.isArray(list) ? list.map((a) => [String(a.lot_id), BigInt(a.credits)]) : [];
}

/** `amount` split over `weights` in proportion, exactly (largest remainder). */
export function split(amount: bigint, weights: readonly [string, bigint][]): [string, bigint][] {
  const total = weights.reduce((s, [, w]) => s + w, 0n);
  if (total === 0n) return [[weights[0]![0], amount]];
  const sign = amount < 0n ? -1n : 1n;
  const abs = amount * sign;
  const parts = weights.map(([k, w], i) => ({ k, base: (abs * w) / total, rem: (abs * w) % total, i }));
  let left = abs - parts.reduce((s, p) => s + p.base, 0n);
  for (const p of [...parts].sort((a, b) => (b.rem > a.rem ? 1 : b.rem < a.rem ? -1 : a.i - b.i))) {
    if (left === 0n) break;
    p.base += 1n;
    left -= 1n;
  }
  return parts.map((p) => [p.k, p.base * sign]);
}

const money = (v: bigint) => {
  const neg = v < 0n;
  const a = neg ? -v : v;
  return `${neg ? '−' : ''}${fmt(a / 1_000_000n)}.${(a % 1_000_000n).toString().padStart(6, '0')}`;
};

export function marginTable(r: MarginReport): string {
  const header = [r.by, 'currency', 'credits', 'revenue', 'breakage', 'upstream cost', 'margin', 'margin %'];
  const line = (x: MarginRow) => [
    x.group, x.currency, fmt(x.credits), money(x.revenueMicros), money(x.breakageMicros), money(x.costMicros), money(x.marginMicros),
    pct(x.marginMicros, x.revenueMicros + x.breakageMicros),
  ];
  return table(header, [...r.rows.map(line), ...r.totals.map(line)], [false, false, true, true, true, true, true, true]);
}

export function marginCsv(r: MarginReport): string {
  const lines = [`${r.by},currency,credits,revenue_micros,breakage_micros,upstream_cost_micros,margin_micros`];
  for (const x of [...r.rows, ...r.totals]) {
    lines.push([csvField(x.group), x.currency, x.credits, x.revenueMicros, x.breakageMicros, x.costMicros, x.marginMicros].join(','));
  }
  return lines.join('\n') + '\n';
}

function pct(part: bigint, whole: bigint): string {
  if (whole === 0n) return '—';
  return `${(Number((part * 10_000n) / whole) / 100).toFixed(2)} %`;
}
