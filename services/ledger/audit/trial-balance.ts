import type pg from 'pg';

/**
 * Trial balance as of a time (ledger README §8, audit README): every account's totals from the
 * journal's transfers up to the last entry recorded at or before `asOf` (recorded_at grows with
 * seq, so "as of T" is "up to seq S"), per unit. Each transfer debits one account and credits
 * another by the same amount, so per unit the balances sum to zero; a unit whose column does
 * not is reported as unbalanced. Read in one snapshot.
 */
export interface TrialBalanceRow {
  accountId: string;
  code: string;
  kind: string;
  unit: string;
  /** Accounts folded into this row (user-scoped accounts are grouped unless asked otherwise). */
  accounts: number;
  debitsPosted: bigint;
  creditsPosted: bigint;
  debitsPending: bigint;
  creditsPending: bigint;
  /** credits_posted − debits_posted. */
  balance: bigint;
}

export interface TrialBalance {
  asOf: Date;
  /** The last entry included. */
  cutSeq: bigint;
  rows: TrialBalanceRow[];
  /** Per unit: Σ balance and Σ pending (credits − debits); both zero when the books balance. */
  totals: Map<string, { balance: bigint; pending: bigint; debits: bigint; credits: bigint }>;
  balanced: boolean;
}

export async function trialBalance(pool: pg.Pool, asOf: Date, options: { allAccounts?: boolean } = {}): Promise<TrialBalance> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // Inputs: the time. Locks: none. Output: the last entry recorded at or before it.
    const cut = BigInt(
      (await client.query<{ s: string }>('SELECT COALESCE(MAX(seq), 0)::text AS s FROM entries WHERE recorded_at <= $1', [asOf.toISOString()]))
        .rows[0]!.s,
    );
    // Inputs: the cut. Locks: none. Output: per account, the four totals from its transfers up
    // to the cut (posted: POSTED and POST_PENDING; pending: PENDING less what was posted or voided).
    const { rows } = await client.query<{
      id: string; code: string; kind: string; unit: string; dp: string; cp: string; dpe: string; cpe: string;
    }>(
      `WITH sides AS (
         SELECT debit_account_id AS id,
                SUM(CASE WHEN kind IN ('POSTED', 'POST_PENDING') THEN amount ELSE 0 END) AS dp, 0::numeric AS cp,
                SUM(CASE kind WHEN 'PENDING' THEN amount WHEN 'POSTED' THEN 0 ELSE -amount END) AS dpe, 0::numeric AS cpe
           FROM transfers WHERE entry_seq <= $1 GROUP BY debit_account_id
         UNION ALL
         SELECT credit_account_id, 0, SUM(CASE WHEN kind IN ('POSTED', 'POST_PENDING') THEN amount ELSE 0 END),
                0, SUM(CASE kind WHEN 'PENDING' THEN amount WHEN 'POSTED' THEN 0 ELSE -amount END)
           FROM transfers WHERE entry_seq <= $1 GROUP BY credit_account_id
       )
       SELECT a.id::text, a.code, a.kind, a.unit, SUM(s.dp)::text AS dp, SUM(s.cp)::text AS cp,
              SUM(s.dpe)::text AS dpe, SUM(s.cpe)::text AS cpe
         FROM sides s JOIN accounts a ON a.id = s.id
        GROUP BY a.id, a.code, a.kind, a.unit
        ORDER BY a.unit, a.kind DESC, a.id`,
      [cut.toString()],
    );
    await client.query('COMMIT');
    const out = new Map<string, TrialBalanceRow>();
    const totals: TrialBalance['totals'] = new Map();
    for (const r of rows) {
      const dp = BigInt(r.dp);
      const cp = BigInt(r.cp);
      const dpe = BigInt(r.dpe);
      const cpe = BigInt(r.cpe);
      const grouped = !options.allAccounts && r.kind !== 'PLATFORM';
      const key = grouped ? `${r.unit}|${r.kind}` : r.id;
      const row = out.get(key) ?? {
        accountId: grouped ? '' : r.id,
        code: grouped ? (r.kind === 'LOT' ? 'user lots' : 'user deferred revenue') : r.code,
        kind: r.kind,
        unit: r.unit,
        accounts: 0,
        debitsPosted: 0n,
        creditsPosted: 0n,
        debitsPending: 0n,
        creditsPending: 0n,
        balance: 0n,
      };
      row.accounts++;
      row.debitsPosted += dp;
      row.creditsPosted += cp;
      row.debitsPending += dpe;
      row.creditsPending += cpe;
      row.balance += cp - dp;
      out.set(key, row);
      const t = totals.get(r.unit) ?? { balance: 0n, pending: 0n, debits: 0n, credits: 0n };
      t.balance += cp - dp;
      t.pending += cpe - dpe;
      t.debits += dp;
      t.credits += cp;
      totals.set(r.unit, t);
    }
    const balanced = [...totals.values()].every((t) => t.balance === 0n && t.pending === 0n);
    return { asOf, cutSeq: cut, rows: [...out.values()], totals, balanced };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

export function trialBalanceCsv(tb: TrialBalance): string {
  const lines = ['unit,account_id,code,kind,accounts,debits_posted,credits_posted,debits_pending,credits_pending,balance'];
  for (const r of tb.rows) {
    lines.push(
      [r.unit, r.accountId, csvField(r.code), r.kind, r.accounts, r.debitsPosted, r.creditsPosted, r.debitsPending, r.creditsPending, r.balance].join(','),
    );
  }
  for (const [unit, t] of tb.totals) lines.push([unit, '', 'TOTAL', '', '', t.debits, t.credits, '', '', t.balance].join(','));
  return lines.join('\n') + '\n';
}

export function trialBalanceTable(tb: TrialBalance): string {
  const header = ['unit', 'account', 'accounts', 'debits posted', 'credits posted', 'pending (cr − dr)', 'balance (cr − dr)'];
  const body = tb.rows.map((r) => [
    r.unit, r.accountId === '' ? `${r.code}` : `${r.code} (#${r.accountId})`, String(r.accounts), fmt(r.debitsPosted), fmt(r.creditsPosted),
    fmt(r.creditsPending - r.debitsPending), fmt(r.balance),
  ]);
  for (const [unit, t] of tb.totals) body.push([unit, 'TOTAL', '', fmt(t.debits), fmt(t.credits), fmt(t.pending), fmt(t.balance)]);
  return table(header, body, [false, false, true, true, true, true, true]);
}

/** Digits grouped by thousands, exact (bigint). */
export function fmt(v: bigint): string {
  const s = (v < 0n ? -v : v).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
  return v < 0n ? `−${s}` : s;
}

export function table(header: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

export function csvField(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}
