import type pg from 'pg';
import { isoSql } from './db-source.js';
import type { Finding } from './journal-row.js';
import { show, type AccountRebuild, type HoldRebuild, type JournalReplay, type LotRebuild } from './replay.js';

/**
 * Compares the ledger's mutable tables with what the journal alone says they must hold
 * (JournalReplay), row by row and column by column, in pages of `pageSize` rows (keyset order,
 * one snapshot: the caller's transaction). Every disagreement is a Finding naming the table,
 * the column, the row and the expected value.
 */

const pageSize = 5_000;

/** Accounts: kind, code, owner, unit, flags, the four totals and the version. */
export async function compareAccounts(client: pg.ClientBase, replay: JournalReplay, report: (f: Finding) => void): Promise<number> {
  const matched = new Set<string>();
  let after = '0';
  let rows = 0;
  for (;;) {
    // Inputs: the last id of the previous page. Locks: none. Output: the next page of accounts.
    const page = await client.query<Record<string, string | null>>(
      `SELECT a.id::text AS id, a.code, a.unit, a.kind, a.user_id, a.flags::text AS flags, a.debits_posted::text AS debits_posted,
              a.credits_posted::text AS credits_posted, a.debits_pending::text AS debits_pending,
              a.credits_pending::text AS credits_pending, a.version::text AS version
         FROM accounts a WHERE a.id > $1 ORDER BY a.id LIMIT ${pageSize}`,
      [after],
    );
    if (page.rows.length === 0) break;
    for (const row of page.rows) {
      rows++;
      const id = row.id!;
      matched.add(id);
      const a = replay.accounts.get(id);
      const expected = expectedAccount(replay, id, a);
      for (const [column, value] of Object.entries(expected)) {
        if (value === undefined) continue;
        if (row[column] !== value) {
          report({
            seq: null,
            table: 'accounts',
            column,
            key: `account ${id} ${row.code ?? ''}`.trim(),
            expected: value,
            found: show(row[column]),
            message:
              a === undefined
                ? 'no transfer in the journal touches this account'
                : `the journal's transfers on this account say otherwise (last entry touching it: ${a.lastSeq})`,
          });
        }
      }
    }
    after = page.rows[page.rows.length - 1]!.id!;
  }
  for (const [id, a] of replay.accounts) {
    if (!matched.has(id)) {
      report({
        seq: a.lastSeq, table: 'accounts', column: 'id', key: `account ${id}`, expected: 'a row', found: 'none',
        message: 'the journal moves money or credits through an account the table does not have',
      });
    }
  }
  return rows;
}

function expectedAccount(replay: JournalReplay, id: string, a: AccountRebuild | undefined): Record<string, string | undefined> {
  const lot = replay.lots.get(id);
  const deferredLotId = replay.deferredOf.get(id);
  const deferredLot = deferredLotId === undefined ? undefined : replay.lots.get(deferredLotId);
  const totals = {
    debits_posted: (a?.debitsPosted ?? 0n).toString(),
    credits_posted: (a?.creditsPosted ?? 0n).toString(),
    debits_pending: (a?.debitsPending ?? 0n).toString(),
    credits_pending: (a?.creditsPending ?? 0n).toString(),
    version: (a?.version ?? 0n).toString(),
  };
  if (lot) {
    return { kind: 'LOT', code: `user:${lot.user_id}:lot:${id}`, user_id: lot.user_id, unit: 'CREDIT', flags: '1', ...totals };
  }
  if (deferredLot) {
    return {
      kind: 'DEFERRED',
      code: `user:${deferredLot.user_id}:lot:${deferredLotId}:deferred`,
      user_id: deferredLot.user_id,
      unit: show(deferredLot.currency),
      flags: '1',
      ...totals,
    };
  }
  // Platform accounts: their codes are not in the journal (see README, audit: limits); their
  // unit is whatever the transfers through them used.
  return { kind: 'PLATFORM', user_id: null as unknown as undefined, flags: '0', unit: a?.unit, ...totals };
}

/**
 * Lots: every column, compared by name with the journal's latest record of the lot. A column
 * the table has and the journal does not record is itself a finding: a fact outside the hash.
 */
export async function compareLots(
  client: pg.ClientBase,
  replay: JournalReplay,
  report: (f: Finding) => void,
  now: Date | undefined,
): Promise<number> {
  // Inputs: none. Locks: none. Output: the lots table's columns and their types.
  const columns = (
    await client.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'lots' ORDER BY ordinal_position`,
    )
  ).rows;
  const select = columns
    .map((c) => (c.data_type.startsWith('timestamp') ? `${isoSql(`l.${c.column_name}`)}` : `l.${c.column_name}::text`) + ` AS "${c.column_name}"`)
    .join(', ');
  const sample = replay.lots.values().next().value as LotRebuild | undefined;
  if (sample) {
    for (const c of columns) {
      if (!(c.column_name in sample)) {
        report({
          seq: null, table: 'lots', column: c.column_name, key: 'every lot', expected: 'journaled in entries.lots', found: 'not journaled',
          message: 'the ledger keeps a lot column that its entries do not record, so it is outside the hash chain',
        });
      }
    }
    for (const key of Object.keys(sample)) {
      if (!columns.some((c) => c.column_name === key)) {
        report({
          seq: sample.entry_seq, table: 'lots', column: key, key: `lot ${sample.account_id}`, expected: 'a column', found: 'none',
          message: 'the journal records a lot field the table does not have',
        });
      }
    }
  }
  const matched = new Set<string>();
  let after = '0';
  let rows = 0;
  for (;;) {
    // Inputs: the last account id of the previous page. Locks: none. Output: the next page of lots.
    const page = await client.query<Record<string, string | null>>(
      `SELECT ${select} FROM lots l WHERE l.account_id > $1 ORDER BY l.account_id LIMIT ${pageSize}`,
      [after],
    );
    if (page.rows.length === 0) break;
    for (const row of page.rows) {
      rows++;
      const id = row.account_id!;
      matched.add(id);
      const lot = replay.lots.get(id);
      if (!lot) {
        report({
          seq: null, table: 'lots', column: 'account_id', key: `lot ${id}`, expected: 'a lot created by an entry', found: 'a row',
          message: 'no entry of the journal records this lot',
        });
        continue;
      }
      for (const c of columns) {
        if (!(c.column_name in lot)) continue;
        const want = show(lot[c.column_name]);
        const got = row[c.column_name] ?? 'null';
        if (want === got) continue;
        if (c.column_name === 'expiry_swept' && got === 'true' && sweptByRule(replay, lot, now)) continue;
        report({
          seq: null, table: 'lots', column: c.column_name, key: `lot ${id}`, expected: want, found: got,
          message: `the journal records lot ${id} otherwise (created by entry ${lot.entry_seq}; the table row was changed outside the ledger)`,
        });
      }
    }
    after = page.rows[page.rows.length - 1]!.account_id!;
  }
  for (const [id, lot] of replay.lots) {
    if (!matched.has(id)) {
      report({
        seq: lot.entry_seq, table: 'lots', column: 'account_id', key: `lot ${id}`, expected: 'a row', found: 'none',
        message: 'the journal created this lot but the table has no row for it',
      });
    }
  }
  return rows;
}

/**
 * The expiry sweeper marks a lot finished without an entry when nothing is left to expire
 * (expired, nothing unheld): bookkeeping, not a movement. The audit accepts the mark exactly
 * when that rule holds on the rebuilt state.
 */
function sweptByRule(replay: JournalReplay, lot: LotRebuild, now: Date | undefined): boolean {
  const expiresAt = lot.expires_at;
  if (typeof expiresAt !== 'string') return false;
  if (now !== undefined && Date.parse(expiresAt) > now.getTime()) return false;
  const a = replay.accounts.get(lot.account_id);
  const unheld = a ? BigInt(a.balance) - BigInt(a.held) : 0n;
  return unheld <= 0n;
}

const holdColumns = ['user_id', 'reserve_seq', 'credits', 'expires_at', 'status', 'closed_seq', 'captured_credits'] as const;

function holdExpected(h: HoldRebuild): Record<(typeof holdColumns)[number], string> {
  return {
    user_id: h.user_id,
    reserve_seq: h.reserve_seq,
    credits: h.credits.toString(),
    expires_at: h.expires_at,
    status: h.status,
    closed_seq: show(h.closed_seq),
    captured_credits: show(h.captured_credits),
  };
}

/** Holds, a batch at a time by id (closed ones as the walk closes them, open ones at the end). */
export async function compareHolds(client: pg.ClientBase, holds: readonly HoldRebuild[], report: (f: Finding) => void): Promise<void> {
  if (holds.length === 0) return;
  // Inputs: hold ids. Locks: none. Output: those holds' rows.
  const { rows } = await client.query<Record<string, string | null>>(
    `SELECT id::text, user_id, reserve_seq::text, credits::text, ${isoSql('expires_at')} AS expires_at, status,
            closed_seq::text, captured_credits::text
       FROM holds WHERE id = ANY($1::uuid[])`,
    [holds.map((h) => h.id)],
  );
  const byId = new Map(rows.map((r) => [r.id!, r]));
  for (const h of holds) {
    const row = byId.get(h.id);
    if (!row) {
      report({
        seq: h.reserve_seq, table: 'holds', column: 'id', key: `hold ${h.id}`, expected: 'a row', found: 'none',
        message: 'the journal opened this hold but the table has no row for it',
      });
      continue;
    }
    const want = holdExpected(h);
    for (const column of holdColumns) {
      const got = row[column] ?? 'null';
      if (got !== want[column]) {
        report({
          seq: null, table: 'holds', column, key: `hold ${h.id}`, expected: want[column], found: got,
          message: `the journal records hold ${h.id} otherwise (reserved by entry ${h.reserve_seq}${h.closed_seq ? `, closed by entry ${h.closed_seq}` : ''})`,
        });
      }
    }
  }
}

/** Holds rows no reservation in the journal explains. */
export async function extraHolds(client: pg.ClientBase, report: (f: Finding) => void): Promise<void> {
  // Inputs: none. Locks: none. Output: holds whose reserve entry is not a RESERVE of that hold.
  const { rows } = await client.query<{ id: string; reserve_seq: string }>(
    `SELECT h.id::text, h.reserve_seq::text FROM holds h
       LEFT JOIN entries e ON e.seq = h.reserve_seq AND e.kind = 'RESERVE' AND e.hold_id = h.id
      WHERE e.seq IS NULL LIMIT 100`,
  );
  for (const r of rows) {
    report({
      seq: null, table: 'holds', column: 'reserve_seq', key: `hold ${r.id}`, expected: 'a RESERVE entry for this hold', found: r.reserve_seq,
      message: 'no reservation in the journal opened this hold',
    });
  }
}

/** Users: every user has a lot (users are created with their first lot), and every lot's user a row. */
export async function compareUsers(client: pg.ClientBase, replay: JournalReplay, report: (f: Finding) => void): Promise<void> {
  // Inputs: none. Locks: none. Output: users no lot belongs to.
  const { rows } = await client.query<{ id: string }>(
    `SELECT u.id FROM users u WHERE NOT EXISTS (SELECT 1 FROM lots l WHERE l.user_id = u.id) LIMIT 100`,
  );
  const journaled = new Set<string>();
  for (const lot of replay.lots.values()) journaled.add(lot.user_id);
  for (const r of rows) {
    if (journaled.has(r.id)) continue;
    report({
      seq: null, table: 'users', column: 'id', key: `user ${r.id}`, expected: 'a user the journal granted a lot to', found: r.id,
      message: 'no entry of the journal gives this user anything',
    });
  }
}
