import pg from 'pg';
import type { JournalRow, TransferRow } from './journal-row.js';

/** ISO-8601 UTC with milliseconds, as the canonical encoding writes timestamps. */
export const isoSql = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * A connection of its own for a walk, in pg's pipeline mode: the next page's queries (and the
 * table comparisons) are sent while the current page is checked, without waiting for earlier
 * answers, which a plain pg client only allows by queueing (deprecated in pg 9). Built with the
 * pool's connection settings; the caller ends it.
 */
export async function walkClient(pool: pg.Pool): Promise<pg.Client> {
  const client = new pg.Client({ ...(pool.options as pg.ClientConfig), pipeline: true } as pg.ClientConfig);
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Text as PostgreSQL sends it, except jsonb (parsed) and smallint (a number). */
const rawTypes = {
  getTypeParser: (oid: number) => {
    if (oid === 3802 || oid === 114) return (v: string) => JSON.parse(v) as unknown;
    if (oid === 21 || oid === 23) return (v: string) => Number(v);
    return (v: string) => v;
  },
};

/**
 * `YYYY-MM-DD HH:MM:SS[.f…]+00` (DateStyle ISO, TimeZone UTC, as set for the walk) to
 * ISO-8601 with milliseconds, as the canonical encoding writes timestamps. Anything else goes
 * through Date.
 */
export function isoFromPg(s: string): string {
  const n = s.length;
  if (n >= 22 && s.charCodeAt(10) === 32 && s.endsWith('+00')) {
    const frac = n > 22 ? s.slice(20, n - 3) : '';
    return `${s.slice(0, 10)}T${s.slice(11, 19)}.${(frac + '000').slice(0, 3)}Z`;
  }
  return new Date(s).toISOString();
}

// Inputs: a seq range. Locks: none (a read-only snapshot). Output: the range's entries in seq
// order, every column as text (bytes as hex), jsonb parsed.
const entriesSql = `
  SELECT seq::text, kind, user_id, hold_id::text, idempotency_key, encode(request_hash, 'hex'), actor,
         recorded_at::text, effective_at::text, policy_version, allocation, metadata, result, lots,
         reverses_seq::text, encode(prev_hash, 'hex'), encode(hash, 'hex')
    FROM entries WHERE seq BETWEEN $1 AND $2 ORDER BY entries.seq`;

// Inputs: the same range. Locks: none. Output: per entry, its transfers in index order as one
// text (fields by ',', transfers by ';', NULL as empty): one column instead of fifteen per
// transfer is most of what makes reading fast (the range scan of the primary key feeds the
// aggregate in order).
const transfersSql = `
  SELECT entry_seq::text,
         string_agg(concat_ws(',', idx, kind, debit_account_id, credit_account_id, amount, unit,
                              COALESCE(pending_seq::text, ''), COALESCE(pending_idx::text, ''),
                              COALESCE(debit_version::text, ''), COALESCE(debit_balance_after::text, ''),
                              COALESCE(debit_held_after::text, ''), COALESCE(credit_version::text, ''),
                              COALESCE(credit_balance_after::text, ''), COALESCE(credit_held_after::text, '')),
                    ';' ORDER BY idx)
    FROM transfers WHERE entry_seq BETWEEN $1 AND $2 GROUP BY transfers.entry_seq ORDER BY transfers.entry_seq`;

const orNull = (v: string | undefined): string | null => (v === undefined || v === '' ? null : v);

/**
 * The transfers of one entry from that text. Kinds and units are plain words and every other
 * field is digits or empty, so a field never holds a comma or semicolon; a tampered one that
 * does no longer splits into fourteen fields and is passed on as a malformed transfer (its
 * kind says so), which the replay reports.
 */
function transfersFrom(text: string): TransferRow[] {
  const out: TransferRow[] = [];
  for (const part of text.split(';')) {
    const f = part.split(',');
    const malformed = f.length !== 14;
    out.push({
      idx: Number(f[0]),
      kind: malformed ? `malformed: ${part}` : f[1]!,
      debit_account_id: f[2] ?? '',
      credit_account_id: f[3] ?? '',
      amount: malformed ? 'NaN' : f[4]!,
      unit: f[5] ?? '',
      pending_seq: orNull(f[6]),
      pending_idx: f[7] === '' || f[7] === undefined ? null : Number(f[7]),
      debit_version: orNull(f[8]),
      debit_balance_after: orNull(f[9]),
      debit_held_after: orNull(f[10]),
      credit_version: orNull(f[11]),
      credit_balance_after: orNull(f[12]),
      credit_held_after: orNull(f[13]),
    });
  }
  return out;
}

/** Transfers whose entry is not in the journal (found while paging; reported by the caller). */
export interface OrphanTransfers {
  entrySeq: string;
  count: number;
}

/**
 * The entries from `fromSeq` to `toSeq` in sequence order, `pageSize` seq numbers at a time,
 * inside the caller's transaction (one snapshot for the whole walk). Each page is two range
 * scans (entries, transfers aggregated per entry), and the next page's queries are sent before
 * the current page is handed out, so PostgreSQL reads ahead while Node checks. Memory: two
 * pages. Transfers of a seq with no entry are passed to `onOrphans`.
 */
export async function* readJournalPages(
  client: pg.ClientBase,
  fromSeq: bigint,
  toSeq: bigint,
  pageSize: number,
  onOrphans?: (orphans: OrphanTransfers[]) => void,
): AsyncGenerator<JournalRow[]> {
  await client.query(`SET LOCAL TIME ZONE 'UTC'`);
  await client.query(`SET LOCAL DateStyle = 'ISO'`);
  const size = BigInt(pageSize);
  const fetch = (a: bigint) => {
    const b = a + size - 1n < toSeq ? a + size - 1n : toSeq;
    const values = [a.toString(), b.toString()];
    return Promise.all([
      client.query<unknown[]>({ text: entriesSql, values, rowMode: 'array', types: rawTypes }),
      client.query<unknown[]>({ text: transfersSql, values, rowMode: 'array', types: rawTypes }),
    ]);
  };
  let at = fromSeq;
  let next = at <= toSeq ? fetch(at) : null;
  try {
    while (next) {
      const [entries, transfers] = await next;
      at += size;
      next = at <= toSeq ? fetch(at) : null;
      const bySeq = new Map<string, string>();
      for (const r of transfers.rows) bySeq.set(r[0] as string, r[1] as string);
      const rows = new Array<JournalRow>(entries.rows.length);
      for (let i = 0; i < entries.rows.length; i++) {
        const r = entries.rows[i]!;
        const seq = r[0] as string;
        const t = bySeq.get(seq);
        if (t !== undefined) bySeq.delete(seq);
        rows[i] = {
          seq,
          kind: r[1] as string,
          user_id: r[2] as string | null,
          hold_id: r[3] as string | null,
          idempotency_key: r[4] as string,
          request_hash: r[5] as string,
          actor: r[6] as string,
          recorded_at: isoFromPg(r[7] as string),
          effective_at: isoFromPg(r[8] as string),
          policy_version: r[9] as string | null,
          allocation: r[10],
          metadata: r[11],
          result: r[12],
          lots: r[13],
          reverses_seq: r[14] as string | null,
          prev_hash: r[15] as string,
          hash: r[16] as string,
          transfers: t === undefined ? [] : transfersFrom(t),
        };
      }
      if (bySeq.size > 0 && onOrphans) onOrphans([...bySeq].map(([entrySeq, text]) => ({ entrySeq, count: text.split(';').length })));
      if (rows.length > 0) yield rows;
    }
  } finally {
    if (next) await next.catch(() => undefined);
  }
}
