import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket } from '../client/index.js';
import { startTestLedger, type TestLedger } from '../testing/ledger-harness.js';
import { loadLots } from './load-batch.js';
import { readBalance } from './read-balance.js';

// The plans of the hot reads, as PostgreSQL runs them (EXPLAIN ANALYZE of the very statements
// the ledger sends), on a database nobody analyzed: what each read touches must follow the
// user's live lots, never their spent ones, and never probe a null account (issue 7 item 17).

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

/** Rows each relation's scans returned (rows × loops) and removed by filters, summed. */
function touched(plans: PlanNode[], relation: string): { rows: number; removed: number } {
  const of = plans.flatMap(nodes).filter((n) => n['Relation Name'] === relation);
  return {
    rows: of.reduce((s, n) => s + n['Actual Rows'] * n['Actual Loops'], 0),
    removed: of.reduce((s, n) => s + (n['Rows Removed by Filter'] ?? 0) * n['Actual Loops'], 0),
  };
}

/** A pool or client whose queries are also run under EXPLAIN ANALYZE, their plans kept. */
function explaining<T extends pg.Pool | pg.PoolClient>(target: T, plans: PlanNode[]): T {
  const query = async (config: pg.QueryConfig | string, values?: unknown[]) => {
    const c = typeof config === 'string' ? { text: config, values } : config;
    // Unnamed, so that the explained statement does not clash with the named one.
    const explained = await target.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>({
      text: `EXPLAIN (ANALYZE, FORMAT JSON) ${c.text}`,
      values: c.values,
    });
    plans.push(explained.rows[0]!['QUERY PLAN'][0]!.Plan);
    return target.query(c);
  };
  return { query } as unknown as T;
}

describe('plans of the hot reads', { timeout: 60_000 }, () => {
  let t: TestLedger;
  let n = 0;
  const key = (p: string) => `${p}-${++n}`;
  const spentLots = 60;

  beforeAll(async () => {
    t = await startTestLedger();
    // A user with many spent lots and one live one; others around them to make a journal.
    for (let i = 0; i < spentLots; i += 1) {
      await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'spent', credits: 1n, bucket: Bucket.BUCKET_BONUS });
    }
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'spent', credits: 1000n, bucket: Bucket.BUCKET_BONUS });
    await Promise.all(
      Array.from({ length: spentLots }, () => t.client.worker.consume({ idempotencyKey: key('c'), userId: 'spent', credits: 1n })),
    );
    await t.client.admin.grant({ idempotencyKey: key('g'), userId: 'free', credits: 5n, bucket: Bucket.BUCKET_BONUS });
    // Enough other users that reading every account is not the cheapest plan on its own
    // merits (on a table of a few pages a sequential scan is, and PostgreSQL rightly takes it).
    const others = 3000;
    let next = 0;
    const lane = async () => {
      while (next < others) {
        const i = next++;
        await t.client.admin.grant({ idempotencyKey: key('g'), userId: `other${i}`, credits: 10n, bucket: Bucket.BUCKET_BONUS });
        if (i % 10 === 0) await t.client.worker.consume({ idempotencyKey: key('c'), userId: `other${i}`, credits: 10n });
      }
    };
    await Promise.all(Array.from({ length: 32 }, lane));
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('GetBalance of a user with 60 spent lots reads only the live one', async () => {
    const plans: PlanNode[] = [];
    const balance = await readBalance(explaining(t.pool, plans), 'spent', t.clock.now());
    expect(balance.lots).toHaveLength(1);
    expect(balance.available).toBe(1000n);
    // One lot row and its account (and no deferred account: a free lot).
    expect(touched(plans, 'lots')).toEqual({ rows: 1, removed: 0 });
    expect(touched(plans, 'accounts')).toEqual({ rows: 1, removed: 0 });
    await t.expectInvariants();
  });

  it("the batch's live-lot load of that user reads only the live lot", async () => {
    const plans: PlanNode[] = [];
    const client = await t.pool.connect();
    try {
      const { lots } = await loadLots(explaining(client, plans), { live: ['spent', 'free'] });
      expect(lots.map((l) => l.userId).sort()).toEqual(['free', 'spent']);
    } finally {
      client.release();
    }
    expect(touched(plans, 'lots')).toEqual({ rows: 2, removed: 0 });
    expect(touched(plans, 'accounts')).toEqual({ rows: 2, removed: 0 });
    await t.expectInvariants();
  });

  it("a spend that leaves a lot live is a HOT update of its account; one that empties it updates the index", async () => {
    // The live-lot index is partial on a flag PostgreSQL derives from the totals, so a change of
    // the totals that keeps the flag touches no index (HOT), as it did before the index existed.
    // Run as the batch's own UPDATE would change the row, in a transaction that is rolled back.
    const client = await t.pool.connect();
    try {
      const { rows } = await client.query<{ id: string; left: string }>(
        `SELECT id::text, (credits_posted - debits_posted)::text AS left FROM accounts
          WHERE user_id = 'free' AND kind = 'LOT'`,
      );
      const lot = rows[0]!;
      expect(BigInt(lot.left)).toBe(5n);
      await client.query('BEGIN');
      const hot = async () =>
        Number((await client.query<{ n: string }>("SELECT pg_stat_get_xact_tuples_hot_updated('accounts'::regclass)::text AS n")).rows[0]!.n);
      const spend = (credits: bigint) =>
        client.query('UPDATE accounts SET debits_posted = debits_posted + $2, version = version + 1 WHERE id = $1', [lot.id, credits.toString()]);
      await spend(1n);
      expect(await hot()).toBe(1);
      // Emptying the lot flips its flag: the index loses the lot, so the update cannot be HOT.
      await spend(4n);
      expect(await hot()).toBe(1);
      const live = await client.query("SELECT id FROM accounts WHERE user_id = 'free' AND live_lot");
      expect(live.rows).toEqual([]);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
    await t.expectInvariants();
  });

  it('GetBalance as_of of a free lot probes its account by index and never a null deferred account', async () => {
    const plans: PlanNode[] = [];
    const balance = await readBalance(explaining(t.pool, plans), 'free', t.clock.now(), t.clock.now());
    expect(balance.available).toBe(5n);
    const transfers = plans.flatMap(nodes).filter((x) => x['Relation Name'] === 'transfers');
    expect(transfers.length).toBeGreaterThan(0);
    // Only the accounts' indexes, no filter removing rows: one probe per side of the lot's
    // account. The deferred side (null) never runs.
    for (const x of transfers) {
      expect(x['Index Name'], x['Node Type']).toMatch(/^transfers_(debit|credit)_account_idx$/);
      expect(x['Rows Removed by Filter'] ?? 0).toBe(0);
    }
    expect(touched(plans, 'transfers').rows).toBeLessThanOrEqual(4);
    // The statement has the same probes for the lot's account and for its deferred account;
    // the latter (null for a free lot) are never executed.
    const neverRun = transfers.filter((x) => x['Actual Loops'] === 0);
    expect(neverRun.length).toBe(transfers.length / 2);
    await t.expectInvariants();
  });
});
