import type pg from 'pg';
import type { JournalRow } from './journal-row.js';

/** ISO-8601 UTC with milliseconds, as the canonical encoding writes timestamps. */
export const isoSql = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * One JSON text per entry, transfers nested in index order: PostgreSQL builds it, Node parses it
 * with one JSON.parse (much cheaper than pg's per-column parsing of ~30 columns per entry).
 * int8 columns are cast to text so no amount passes through a JS number.
 */
const entryJsonSql = `
  json_build_object(
    'seq', e.seq::text, 'kind', e.kind, 'user_id', e.user_id, 'hold_id', e.hold_id::text,
    'idempotency_key', e.idempotency_key, 'request_hash', encode(e.request_hash, 'hex'), 'actor', e.actor,
    'recorded_at', ${isoSql('e.recorded_at')}, 'effective_at', ${isoSql('e.effective_at')},
    'policy_version', e.policy_version, 'allocation', e.allocation, 'metadata', e.metadata, 'result', e.result,
    'lots', e.lots, 'reverses_seq', e.reverses_seq::text,
    'prev_hash', encode(e.prev_hash, 'hex'), 'hash', encode(e.hash, 'hex'),
    'transfers', COALESCE((
      SELECT json_agg(json_build_object(
               'idx', t.idx, 'kind', t.kind, 'debit_account_id', t.debit_account_id::text,
               'credit_account_id', t.credit_account_id::text, 'amount', t.amount::text, 'unit', t.unit,
               'pending_seq', t.pending_seq::text, 'pending_idx', t.pending_idx,
               'debit_version', t.debit_version::text, 'debit_balance_after', t.debit_balance_after::text,
               'debit_held_after', t.debit_held_after::text, 'credit_version', t.credit_version::text,
               'credit_balance_after', t.credit_balance_after::text, 'credit_held_after', t.credit_held_after::text)
             ORDER BY t.idx)
        FROM transfers t WHERE t.entry_seq = e.seq), '[]'::json)
  )::text AS j`;

/**
 * The entries from `fromSeq` to `toSeq` in sequence order, `pageSize` at a time, through a
 * cursor of the caller's transaction (so the whole walk sees one snapshot). The next page is
 * requested before the current one is handed out, so PostgreSQL builds it while Node checks.
 * Memory: two pages.
 */
export async function* readJournalPages(
  client: pg.ClientBase,
  fromSeq: bigint,
  toSeq: bigint,
  pageSize: number,
): AsyncGenerator<JournalRow[]> {
  // Inputs: the seq range. Locks: none (a read-only snapshot). Output: a cursor over the
  // range's entries, each as one JSON text with its transfers.
  await client.query(
    `DECLARE audit_journal NO SCROLL CURSOR FOR
       SELECT ${entryJsonSql} FROM entries e WHERE e.seq BETWEEN $1 AND $2 ORDER BY e.seq`,
    [fromSeq.toString(), toSeq.toString()],
  );
  // The column is text (`::text`), so pg hands it over as a string without parsing it.
  const fetch = () => client.query<{ j: string }>(`FETCH ${pageSize} FROM audit_journal`);
  let next = fetch();
  try {
    for (;;) {
      const page = await next;
      if (page.rows.length === 0) break;
      next = fetch();
      const rows = new Array<JournalRow>(page.rows.length);
      for (let i = 0; i < page.rows.length; i++) rows[i] = JSON.parse(page.rows[i]!.j) as JournalRow;
      yield rows;
    }
  } finally {
    await next.catch(() => undefined);
    await client.query('CLOSE audit_journal').catch(() => undefined);
  }
}
