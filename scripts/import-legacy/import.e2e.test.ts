import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, type GetBalanceResponse } from '../../services/ledger/client/index.js';
import { ManualClock } from '../../services/lib/clock.js';
import { startTestLedger, type TestLedger } from '../../services/ledger/testing/ledger-harness.js';
import { LegacyValidationError, parseLegacyExport, purchaseColumns, userColumns } from './legacy-rows.js';
import { analyzeTables, analyzedTables } from './analyze-tables.js';
import { planImport } from './plan-import.js';
import { runImport } from './run-import.js';

// The legacy import end to end: a 10 000-user export (and a few thousand purchases) written to
// CSV files, validated, planned and posted through the ledger's gRPC API; balances checked per
// user (GetBalance) and in total (the read-only `user_credits` view); a second run changes
// nothing; a corrupt row stops everything before anything is posted.

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const dayMs = 86_400_000;

interface GenUser {
  userId: string;
  current: bigint;
  purchased: bigint;
  subscription: bigint;
  plan: string;
  periodStart: string;
  periodEnd: string;
}
interface GenPurchase {
  id: string;
  userId: string;
  credits: bigint;
  amountCents: bigint;
  currency: string;
  session: string;
  status: string;
  createdAt: string;
}

/** A small deterministic PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)) };
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) || value !== value.trim() ? `"${value.replaceAll('"', '""')}"` : value;
}

/** CSV text and the physical line each record starts on. */
function toCsv(header: readonly string[], rows: string[][], eol: string): { text: string; lines: number[] } {
  const lines: number[] = [];
  let line = 2;
  const out = [header.join(',')];
  for (const row of rows) {
    lines.push(line);
    const record = row.map(csvField).join(',');
    out.push(record);
    line += 1 + (record.match(/\n/g)?.length ?? 0);
  }
  return { text: out.join(eol) + eol, lines };
}

function generate(userCount: number, now: Date, seed = 20261124) {
  const r = rng(seed);
  const iso = (ms: number) => new Date(ms).toISOString();
  const users: GenUser[] = [];
  const purchases: GenPurchase[] = [];
  let p = 0;
  for (let i = 0; i < userCount; i += 1) {
    // A few ids that need CSV quoting, one plan over two lines.
    const userId = i === 17 ? `u,${i}` : i === 18 ? `q"${i}` : `lu${i}`;
    const kind = i % 10;
    let purchased = 0n;
    let subscription = 0n;
    let bonus = 0n;
    let plan = '';
    let periodStart = '';
    let periodEnd = '';
    if (kind !== 0) {
      if ([1, 2, 3, 8, 9].includes(kind)) purchased = BigInt(r.int(1, 5000));
      if ([4, 5, 6, 8].includes(kind)) {
        subscription = BigInt(r.int(1, 1000));
        plan = i === 24 ? 'Pro, annual' : i === 34 ? 'Legacy\nplan' : i % 3 === 0 ? 'pro' : 'basic';
        // kind 6: the period ended before the import (the reset would have taken the credits).
        const end = kind === 6 ? now.getTime() - r.int(1, 20) * dayMs : now.getTime() + r.int(1, 28) * dayMs;
        periodStart = iso(end - 30 * dayMs);
        periodEnd = iso(end);
      }
      if ([5, 7, 8, 9].includes(kind)) bonus = BigInt(r.int(0, 300));
    }
    const currency = i % 4 === 0 ? 'EUR' : 'USD';
    if (purchased > 0n && i % 3 !== 0) {
      const count = r.int(1, 2);
      for (let k = 0; k < count; k += 1) {
        purchases.push({
          id: `p${(p += 1)}`, userId, credits: BigInt(r.int(100, 3000)), amountCents: BigInt(r.int(499, 29999)),
          currency: k === 0 && i % 7 === 0 ? currency.toLowerCase() : currency, session: `cs_${p}`, status: 'completed',
          createdAt: iso(now.getTime() - r.int(30, 600) * dayMs),
        });
      }
      if (i % 5 === 0) {
        // Not completed: ignored for cost basis, and may be in another currency.
        purchases.push({
          id: `p${(p += 1)}`, userId, credits: 500n, amountCents: 4999n, currency: 'GBP', session: `cs_${p}`,
          status: i % 2 === 0 ? 'refunded' : 'pending', createdAt: iso(now.getTime() - 10 * dayMs),
        });
      }
    }
    users.push({ userId, current: purchased + subscription + bonus, purchased, subscription, plan, periodStart, periodEnd });
  }
  return { users, purchases };
}

function usersCsv(users: GenUser[]) {
  return toCsv(
    userColumns,
    users.map((u) => [u.userId, String(u.current), String(u.purchased), String(u.subscription), u.plan, u.periodStart, u.periodEnd]),
    '\r\n',
  );
}
function purchasesCsv(purchases: GenPurchase[]) {
  return toCsv(
    purchaseColumns,
    purchases.map((x) => [x.id, x.userId, String(x.credits), String(x.amountCents), x.currency, x.session, x.status, x.createdAt]),
    '\n',
  );
}

/** What each user's balance must be after the import, worked out from the generated rows. */
function expectedBalances(users: GenUser[], purchases: GenPurchase[], now: Date) {
  const paid = new Map<string, { credits: bigint; micros: bigint; currency: string }>();
  for (const x of purchases) {
    if (x.status !== 'completed') continue;
    const s = paid.get(x.userId) ?? { credits: 0n, micros: 0n, currency: x.currency.toUpperCase() };
    s.credits += x.credits;
    s.micros += x.amountCents * 10_000n;
    paid.set(x.userId, s);
  }
  return new Map(
    users.map((u) => {
      const active = u.subscription > 0n && new Date(u.periodEnd).getTime() > now.getTime();
      const history = paid.get(u.userId);
      let cost = 0n;
      if (history && u.purchased > 0n) {
        cost = (history.micros * u.purchased) / history.credits;
        if (cost > history.micros) cost = history.micros;
      }
      return [
        u.userId,
        {
          subscription: active ? u.subscription : 0n,
          bonus: u.current - u.purchased - u.subscription,
          purchased: u.purchased,
          cost,
          currency: cost > 0n ? history!.currency : '',
          periodEnd: active ? new Date(u.periodEnd) : null,
          plan: active ? u.plan : null,
        },
      ];
    }),
  );
}

function buckets(b: GetBalanceResponse) {
  const of = (bucket: Bucket) => b.buckets.find((x) => x.bucket === bucket)!.balance;
  return { subscription: of(Bucket.BUCKET_SUBSCRIPTION), bonus: of(Bucket.BUCKET_BONUS), purchased: of(Bucket.BUCKET_PURCHASED) };
}

describe('legacy import', () => {
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  const now = clock.now();
  let t: TestLedger;
  let dir: string;
  let adminToken: string;
  const head = async () => BigInt((await t.pool.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);

  const data = generate(10_000, now);
  const usersFile = usersCsv(data.users);
  const purchasesFile = purchasesCsv(data.purchases);
  const expected = expectedBalances(data.users, data.purchases, now);

  beforeAll(async () => {
    t = await startTestLedger({ clock });
    dir = await mkdtemp(join(tmpdir(), 'legacy-import-'));
    adminToken = t.options.credentials.find((c) => c.role === 'admin')!.token;
  });
  afterAll(async () => {
    await t?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('imports 10 000 users: balances per user and in total, through GetBalance and the user_credits view', { timeout: 180_000 }, async () => {
    expect(data.purchases.length).toBeGreaterThan(2_000);
    await writeFile(join(dir, 'users.csv'), usersFile.text);
    await writeFile(join(dir, 'purchases.csv'), purchasesFile.text);
    const exported = parseLegacyExport(usersFile.text, purchasesFile.text);
    expect(exported.users).toHaveLength(10_000);
    expect(exported.users.map((u) => u.line)).toEqual(usersFile.lines);
    const plan = planImport(exported, clock.now());

    const report = await runImport(t.client.admin, plan, 32);
    const wantCredits = [...expected.values()].reduce((s, e) => s + e.subscription + e.bonus + e.purchased, 0n);
    expect(report).toEqual({ commands: plan.length, written: plan.length, replayed: 0, credits: wantCredits });
    expect(await head()).toBe(BigInt(plan.length));

    // Totals, from the view, against the export.
    type Want = typeof expected extends Map<string, infer V> ? V : never;
    const sum = (f: (e: Want) => bigint) => [...expected.values()].reduce((s, e) => s + f(e), 0n);
    const totals = (
      await t.pool.query<Record<string, string>>(
        `SELECT COUNT(*)::text AS users, SUM(current_balance)::text AS current, SUM(purchased_credits_balance)::text AS purchased,
                SUM(subscription_credits_balance)::text AS subscription, SUM(bonus_credits_balance)::text AS bonus,
                SUM(held_credits)::text AS held
           FROM user_credits`,
      )
    ).rows[0]!;
    const withCredits = [...expected.values()].filter((e) => e.subscription + e.bonus + e.purchased > 0n).length;
    expect(totals).toEqual({
      users: String(withCredits),
      current: String(wantCredits),
      purchased: String(sum((e) => e.purchased)),
      subscription: String(sum((e) => e.subscription)),
      bonus: String(sum((e) => e.bonus)),
      held: '0',
    });
    const cost = await t.pool.query<{ currency: string; micros: string }>(
      `SELECT currency, SUM(cost_basis_micros)::text AS micros FROM lots WHERE currency IS NOT NULL GROUP BY currency ORDER BY currency`,
    );
    const wantCost = new Map<string, bigint>();
    for (const e of expected.values()) if (e.cost > 0n) wantCost.set(e.currency, (wantCost.get(e.currency) ?? 0n) + e.cost);
    expect(cost.rows.map((r) => [r.currency, BigInt(r.micros)])).toEqual([...wantCost.entries()].sort());

    // A sample of users: GetBalance against the export, and the view against GetBalance.
    const ids = [...expected.keys()];
    const sample = [...new Set(['u,17', 'q"18', 'lu24', 'lu34', ...Array.from({ length: 60 }, (_, i) => ids[(i * 163 + 7) % ids.length]!)])];
    for (const userId of sample) {
      const want = expected.get(userId)!;
      if (want.subscription + want.bonus + want.purchased === 0n) {
        const missing = await t.client.auditor.getBalance({ userId }).then(() => 'found', () => 'not found');
        expect({ userId, missing }).toEqual({ userId, missing: 'not found' });
        continue;
      }
      const b = await t.client.auditor.getBalance({ userId });
      expect({ userId, ...buckets(b) }).toEqual({ userId, subscription: want.subscription, bonus: want.bonus, purchased: want.purchased });
      const purchasedLot = b.lots.find((l) => l.bucket === Bucket.BUCKET_PURCHASED);
      expect({ userId, cost: purchasedLot?.costBasisMicros ?? 0n, currency: purchasedLot?.currency ?? '' }).toEqual({
        userId,
        cost: want.cost,
        currency: want.currency,
      });
      const subLot = b.lots.find((l) => l.bucket === Bucket.BUCKET_SUBSCRIPTION);
      expect({ userId, expiresAt: subLot?.expiresAt ?? null }).toEqual({ userId, expiresAt: want.periodEnd });
      const view = (
        await t.pool.query<Record<string, string | null>>(
          `SELECT current_balance::text, purchased_credits_balance::text, subscription_credits_balance::text,
                  bonus_credits_balance::text, held_credits::text
             FROM user_credits WHERE user_id = $1`,
          [userId],
        )
      ).rows;
      const s = buckets(b);
      expect({ userId, view }).toEqual({
        userId,
        view: [
          {
            current_balance: String(b.balance),
            purchased_credits_balance: String(s.purchased),
            subscription_credits_balance: String(s.subscription),
            bonus_credits_balance: String(s.bonus),
            held_credits: String(b.held),
          },
        ],
      });
    }
    await t.expectInvariants();
  });

  it('the import ends by analyzing the ledger tables: their statistics count the imported rows', { timeout: 60_000 }, async () => {
    // The 10 000-user import above ran; nothing has analyzed the tables since (autovacuum is off
    // in the test cluster or has not woken yet), so the planner's row counts are stale.
    await analyzeTables(t.db.url);
    const { rows } = await t.pool.query<{ relname: string; reltuples: number; analyzed: boolean }>(
      `SELECT c.relname, c.reltuples, s.last_analyze IS NOT NULL AS analyzed
         FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.relname = ANY($1::text[])`,
      [[...analyzedTables]],
    );
    expect(rows.map((r) => r.relname).sort()).toEqual([...analyzedTables].sort());
    for (const r of rows) expect(r, r.relname).toMatchObject({ analyzed: true });
    const tuples = new Map(rows.map((r) => [r.relname, r.reltuples]));
    const count = async (table: string) => Number((await t.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`)).rows[0]!.n);
    const entries = await count('entries');
    expect(entries).toBeGreaterThan(5_000);
    // ANALYZE samples 30 000 rows per table, so on tables this small its counts are exact.
    expect(tuples.get('entries')).toBe(entries);
    expect(tuples.get('users')).toBe(await count('users'));
    expect(tuples.get('lots')).toBe(await count('lots'));
    await t.expectInvariants();
  });

  it('a second run changes nothing: every command is replayed, the journal head does not move', { timeout: 180_000 }, async () => {
    const before = await head();
    expect(before).toBeGreaterThan(0n);
    const viewBefore = await t.pool.query(`SELECT * FROM user_credits ORDER BY user_id`);
    const plan = planImport(parseLegacyExport(usersFile.text, purchasesFile.text), clock.now());
    const report = await runImport(t.client.admin, plan, 32);
    expect(report).toMatchObject({ commands: plan.length, written: 0, replayed: plan.length });
    expect(await head()).toBe(before);
    expect((await t.pool.query(`SELECT * FROM user_credits ORDER BY user_id`)).rows).toEqual(viewBefore.rows);
    await t.expectInvariants();
  });

  it('the user_credits view keeps the legacy subscription columns of imported subscribers', async () => {
    const rows = (
      await t.pool.query<{ user_id: string; subscription_plan: string | null; subscription_period_end: Date | null }>(
        `SELECT user_id, subscription_plan, subscription_period_end FROM user_credits WHERE user_id = ANY($1::text[]) ORDER BY user_id`,
        [['lu4', 'lu14', 'lu15', 'lu24', 'lu34', 'lu45', 'lu48']],
      )
    ).rows;
    expect(rows.map((r) => r.user_id)).toEqual(['lu14', 'lu15', 'lu24', 'lu34', 'lu4', 'lu45', 'lu48']);
    const want = rows.map((r) => ({
      user_id: r.user_id,
      // The import folds white space in plan names (one wrapped over two lines in the export).
      subscription_plan: expected.get(r.user_id)!.plan!.replace(/\s+/g, ' ').trim(),
      subscription_period_end: expected.get(r.user_id)!.periodEnd,
    }));
    expect(want.every((w) => w.subscription_plan !== null)).toBe(true);
    expect(rows).toEqual(want);
  });

  it('the user_credits view refuses writes', async () => {
    for (const sql of [
      `INSERT INTO user_credits (user_id, current_balance) VALUES ('intruder', 1000)`,
      `UPDATE user_credits SET current_balance = current_balance + 1000 WHERE user_id = 'lu1'`,
      `DELETE FROM user_credits WHERE user_id = 'lu1'`,
    ]) {
      await expect(t.pool.query(sql)).rejects.toThrow(/cannot (insert into|update|delete from) view "user_credits"/);
    }
    const { rows } = await t.pool.query(`SELECT 1 FROM users WHERE id = 'intruder'`);
    expect(rows).toEqual([]);
    await t.expectInvariants();
  });

  it('a corrupt row stops the import before anything is posted, naming file, line and column', { timeout: 60_000 }, async () => {
    const before = await head();
    // A fresh user set (ids no earlier run used) with one bad row deep in the file; an earlier
    // row holds a quoted line break, so the physical line differs from the record number.
    const fresh = generate(10_000, now, 7).users.map((u) => ({ ...u, userId: `x${u.userId}` }));
    const badIndex = 7_345;
    fresh[badIndex] = { ...fresh[badIndex]!, current: -1n };
    const file = usersCsv(fresh);
    const badLine = file.lines[badIndex]!;
    expect(badLine).toBeGreaterThan(badIndex + 2); // the two-line plan comes before it
    await writeFile(join(dir, 'corrupt-users.csv'), file.text);
    await writeFile(join(dir, 'corrupt-purchases.csv'), purchasesCsv([]).text);

    expect(() => parseLegacyExport(file.text, purchasesCsv([]).text)).toThrow(LegacyValidationError);
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        join(repoRoot, 'node_modules/.bin/tsx'),
        ['scripts/import-legacy/main.ts', '--users', join(dir, 'corrupt-users.csv'), '--purchases', join(dir, 'corrupt-purchases.csv')],
        { cwd: repoRoot, env: { ...process.env, LEDGER_ADDR: t.address, LEDGER_TOKEN: adminToken }, timeout: 50_000 },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      );
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('nothing imported');
    expect(result.stderr).toContain(`user_credits.csv line ${badLine}, current_balance: "-1"`);
    expect(result.stdout).not.toContain('imported');
    expect(await head()).toBe(before);
    const { rows } = await t.pool.query(`SELECT 1 FROM users WHERE id LIKE 'x%' LIMIT 1`);
    expect(rows).toEqual([]);
    await t.expectInvariants();
  });

  it('an export that validates is imported whole: rows the ledger would refuse are caught before anything is posted', async () => {
    const results: { label: string; outcome: string; usersPosted: number }[] = [];
    // A legacy id of 120 characters is a valid legacy id and a valid ledger user id, and a
    // purchase in CAD is a well-formed ISO 4217 code; neither may leave a half-done import.
    for (const [label, users, purchases] of [
      [
        'long user id',
        Array.from({ length: 40 }, (_, i): GenUser => ({
          userId: i === 20 ? `long-${'y'.repeat(115)}` : `ok-long-${i}`, current: 10n, purchased: 0n, subscription: 0n, plan: '', periodStart: '', periodEnd: '',
        })),
        [] as GenPurchase[],
      ],
      [
        'currency the ledger does not take',
        Array.from({ length: 40 }, (_, i): GenUser => ({
          userId: `ok-cad-${i}`, current: 10n, purchased: 10n, subscription: 0n, plan: '', periodStart: '', periodEnd: '',
        })),
        [{ id: 'cad-1', userId: 'ok-cad-20', credits: 10n, amountCents: 1000n, currency: 'CAD', session: 'cs_cad', status: 'completed', createdAt: '2026-01-01T00:00:00Z' }],
      ],
    ] as const) {
      const before = await head();
      const label0 = label;
      const u = usersCsv([...users]).text;
      const p = purchasesCsv([...purchases]).text;
      let exported;
      try {
        exported = parseLegacyExport(u, p);
      } catch (error) {
        // Refused up front, naming the row: nothing was posted.
        expect(error).toBeInstanceOf(LegacyValidationError);
        expect((error as Error).message).toMatch(/line \d+/);
        expect(await head()).toBe(before);
        results.push({ label: label0, outcome: 'refused up front', usersPosted: 0 });
        continue;
      }
      const outcome = await runImport(t.client.admin, planImport(exported, clock.now()), 4).then(
        () => 'imported',
        (error: Error) => error.message,
      );
      const posted = await t.pool.query<{ n: number }>(`SELECT COUNT(*)::int AS n FROM users WHERE id = ANY($1::text[])`, [users.map((x) => x.userId)]);
      results.push({ label: label0, outcome, usersPosted: posted.rows[0]!.n });
    }
    // Either all of an export is in the ledger, or (had validation caught it) none of it.
    expect(results.map((r) => r.label)).toEqual(['long user id', 'currency the ledger does not take']);
    const halfDone = results.filter(
      (r) => !((r.outcome === 'imported' && r.usersPosted === 40) || (r.outcome === 'refused up front' && r.usersPosted === 0)),
    );
    expect(halfDone).toEqual([]);
    await t.expectInvariants();
  });
});
