import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from '../../testing/test-db.js';
import { recomputeHash } from './audit-hash.js';
import { readJournalPages } from './db-source.js';
import { buildSampleJournal, copyDatabase, tamper, type SampleJournal } from './testing/sample-journal.js';

// The audit CLI (audit README), run as a child process exactly as an auditor runs it, against
// copies of a journal built through the ledger's gRPC API.

const root = path.resolve(import.meta.dirname, '../../..');
const main = path.join(root, 'services/ledger/audit/main.ts');
let sample: SampleJournal;
const copies: TestDatabase[] = [];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'audit-cli-'));

beforeAll(async () => {
  sample = await buildSampleJournal();
}, 60_000);

afterAll(async () => {
  for (const c of copies) await c.drop();
  await sample?.db.drop();
  rmSync(tmp, { recursive: true, force: true });
});

async function copy(name: string): Promise<TestDatabase> {
  const c = await copyDatabase(sample.db, name);
  copies.push(c);
  return c;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function audit(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', main, ...args],
      { cwd: root, env: { PATH: process.env.PATH, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function sql<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

describe('audit verify', () => {
  it('exits 0 on a whole journal, with plain progress lines when not on a terminal and a summary', async () => {
    const db = await copy('cli_ok');
    const r = await audit(['verify'], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`journal whole: entries 1–${sample.seq.last}`);
    expect(r.stdout).toMatch(/tables rebuilt from the journal and equal: \d+ accounts, \d+ lots, \d+ holds/);
    expect(r.stderr).toMatch(/^verify: \d+\/\d+ \(\d+%\)/m);
    expect(r.stderr).not.toContain('\r');
    expect(r.stderr).not.toContain('Warning');
  });

  it('also runs through `npm run audit --`', async () => {
    const db = await copy('cli_npm');
    const r = await new Promise<Run>((resolve) =>
      execFile('npm', ['run', '--silent', 'audit', '--', 'verify', '--from', '2', '--to', '5'], { cwd: root, env: { ...process.env, DATABASE_URL: db.url } }, (e, stdout, stderr) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('journal whole: entries 2–5 (a range: tables not compared)');
  });

  it('exits 1 naming the first bad entry, its table and column and the expected value (a changed transfer amount)', async () => {
    const db = await copy('cli_amount');
    const seq = sample.seq.capture;
    const [before] = await sql<{ a: string }>(db.url, 'SELECT amount::text a FROM transfers WHERE entry_seq = $1 AND idx = 0', [seq.toString()]);
    await tamper(db.url, 'UPDATE transfers SET amount = amount - 1 WHERE entry_seq = $1 AND idx = 0', [seq.toString()]);
    const r = await audit(['verify'], { DATABASE_URL: db.url });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`DAMAGED: first bad entry ${seq}: entry ${seq}: transfers.amount (transfer ${seq}/0): expected ${before!.a}, found ${BigInt(before!.a) - 1n}`);
  });

  it('exits 1 naming the lot row and column when lots.expires_at is nulled', async () => {
    const db = await copy('cli_lot');
    await tamper(db.url, 'UPDATE lots SET expires_at = NULL WHERE account_id = $1', [sample.expiringLot.toString()]);
    const r = await audit(['verify'], { DATABASE_URL: db.url });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`DAMAGED: lots\\.expires_at \\(lot ${sample.expiringLot}\\): expected \\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z, found null`));
  });

  it('checkpoint signs the head; verify --checkpoints catches a chain recomputed after an edit', async () => {
    const db = await copy('cli_ckpt');
    const seed = randomBytes(32).toString('hex');
    const file = path.join(tmp, 'checkpoints.jsonl');
    const signed = await audit(['checkpoint', '--out', file], { DATABASE_URL: db.url, AUDIT_SIGNING_KEY: seed });
    expect(signed.code, signed.stderr).toBe(0);
    const checkpoint = JSON.parse(signed.stdout) as { seq: string; public_key: string };
    expect(checkpoint.seq).toBe(sample.seq.last.toString());
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);

    const ok = await audit(['verify', '--checkpoints', file, '--public-key', checkpoint.public_key], { DATABASE_URL: db.url });
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toContain(`checkpoints matched: ${checkpoint.seq}`);

    // An owner rewrites an early entry and recomputes every hash after it.
    const edited = sample.seq.consume;
    await tamper(db.url, `UPDATE entries SET metadata = metadata || '{"upstream.model":"free"}' WHERE seq = $1`, [edited.toString()]);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query('BEGIN');
    const rows = [];
    for await (const page of readJournalPages(c, edited, sample.seq.last, 100)) rows.push(...page);
    await c.query('COMMIT');
    await c.end();
    let prev = rows[0]!.prev_hash;
    for (const row of rows) {
      row.hash = recomputeHash(prev, { ...row, prev_hash: prev });
      await tamper(db.url, `UPDATE entries SET prev_hash = decode($2, 'hex'), hash = decode($3, 'hex') WHERE seq = $1`, [row.seq, prev, row.hash]);
      prev = row.hash;
    }
    await tamper(db.url, `UPDATE journal_head SET hash = decode($1, 'hex')`, [prev]);
    expect((await audit(['verify'], { DATABASE_URL: db.url })).code).toBe(0);
    const caught = await audit(['verify', '--checkpoints', file, '--public-key', checkpoint.public_key], { DATABASE_URL: db.url });
    expect(caught.code).toBe(1);
    expect(caught.stdout).toContain(`DAMAGED: first bad entry ${checkpoint.seq}: entry ${checkpoint.seq}: entries.hash`);
    expect(caught.stdout).toContain('history was rewritten');

    // Another key's signature is refused, as is a damaged checkpoint file.
    const otherPem = path.join(tmp, 'other.pem');
    writeFileSync(otherPem, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const wrong = await audit(['verify', '--checkpoints', file, '--public-key', otherPem], { DATABASE_URL: db.url });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('does not verify with the given public key');
  });
});

describe('audit trial-balance', () => {
  it('lists every account per unit, summing to zero, as a table and as CSV; --as-of cuts the journal', async () => {
    const db = await copy('cli_tb');
    // Time is given explicitly: the tests do not depend on today's date.
    const asOf = sample.endedAt.toISOString();
    const r = await audit(['trial-balance', '--as-of', asOf], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('balanced: every unit sums to zero');
    expect(r.stdout).toContain('revenue.recognized.USD');
    const csv = await audit(['trial-balance', '--as-of', asOf, '--csv', '--all-accounts'], { DATABASE_URL: db.url });
    expect(csv.code).toBe(0);
    const lines = csv.stdout.trim().split('\n').slice(1).map((l) => l.split(','));
    const sums = new Map<string, bigint>();
    for (const l of lines.filter((x) => x[2] !== 'TOTAL')) sums.set(l[0]!, (sums.get(l[0]!) ?? 0n) + BigInt(l[9]!));
    expect([...sums.values()].every((v) => v === 0n)).toBe(true);
    expect(sums.size).toBe(2); // CREDIT and USD
    // Every account the table holds with a movement is listed, with its balance as the table says.
    const accounts = await sql<{ id: string; b: string }>(db.url, 'SELECT id::text, (credits_posted - debits_posted)::text b FROM accounts WHERE version > 0');
    for (const a of accounts) expect(lines.find((l) => l[1] === a.id)?.[9]).toBe(a.b);
    // Before anything was recorded: nothing.
    const early = await audit(['trial-balance', '--as-of', '2026-10-01', '--csv'], { DATABASE_URL: db.url });
    expect(early.code).toBe(0);
    expect(early.stdout.trim().split('\n')).toHaveLength(1);
  });
});

describe('audit export', () => {
  it('writes CSV, JSON lines and a signed manifest that verify --export checks offline; a flipped byte is caught', async () => {
    const db = await copy('cli_export');
    const seed = randomBytes(32).toString('base64');
    const dir = path.join(tmp, 'export');
    const r = await audit(['export', '--from', '1', '--to', String(sample.seq.last), '--out', dir], { DATABASE_URL: db.url, AUDIT_SIGNING_KEY: seed });
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.counts.entries).toBe(Number(sample.seq.last));
    expect(manifest.last_seq).toBe(sample.seq.last.toString());
    const [head] = await sql<{ h: string }>(db.url, `SELECT encode(hash, 'hex') h FROM journal_head`);
    expect(manifest.head_hash).toBe(head!.h);
    expect(Object.keys(manifest.totals).sort()).toEqual(['CREDIT', 'USD']);
    for (const f of ['entries.jsonl', 'entries.csv', 'transfers.csv', 'accounts.csv']) expect(existsSync(path.join(dir, f))).toBe(true);

    // Offline: no DATABASE_URL at all.
    const ok = await audit(['verify', '--export', dir, '--public-key', manifest.checkpoint.public_key]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toContain(`export whole: ${sample.seq.last} entries`);
    expect(ok.stdout).toContain('signature: valid');

    // One flipped byte in the middle of the entries: the file's digest and the entry's hash.
    const file = path.join(dir, 'entries.jsonl');
    const bytes = readFileSync(file);
    const at = bytes.indexOf(Buffer.from('"amount":"')) + 10;
    bytes[at] = bytes[at] === 0x31 ? 0x32 : 0x31;
    writeFileSync(file, bytes);
    const bad = await audit(['verify', '--export', dir]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/EXPORT DAMAGED: entry \d+: /);
    expect(bad.stdout).toContain('entries.jsonl.sha256');

    // A range export by time hangs on the chain at its first entry.
    const part = path.join(tmp, 'export-part');
    const p = await audit(['export', '--from', '3', '--to', '9', '--out', part], { DATABASE_URL: db.url });
    expect(p.code).toBe(0);
    const pv = await audit(['verify', '--export', part]);
    expect(pv.code, pv.stdout).toBe(0);
    expect(pv.stdout).toContain('7 entries 3–9');
    expect(pv.stdout).toContain('signature: absent');
  });
});

describe('audit margin', () => {
  it('totals equal the revenue, breakage and upstream cost accounts to the micro, by day, model and package; draws a chart', async () => {
    const db = await copy('cli_margin');
    const [acc] = await sql<{ rev: string; brk: string; cost: string }>(
      db.url,
      `SELECT (SELECT (credits_posted - debits_posted)::text FROM accounts WHERE code = 'revenue.recognized.USD') rev,
              (SELECT (credits_posted - debits_posted)::text FROM accounts WHERE code = 'revenue.breakage.USD') brk,
              (SELECT (debits_posted - credits_posted)::text FROM accounts WHERE code = 'upstream.wavespeed.cost.USD') cost`,
    );
    expect(BigInt(acc!.rev)).toBeGreaterThan(0n);
    expect(BigInt(acc!.cost)).toBe(sample.upstream.reduce((s, u) => s + u.amountMicros, 0n));
    for (const by of ['day', 'model', 'package']) {
      const chart = path.join(tmp, `margin-${by}.svg`);
      const r = await audit(['margin', '--by', by, '--csv', '--chart', chart], { DATABASE_URL: db.url });
      expect(r.code, r.stderr).toBe(0);
      const rows = r.stdout.trim().split('\n').slice(1).map((l) => l.split(','));
      const total = rows.find((x) => x[0] === 'TOTAL' && x[1] === 'USD')!;
      expect({ rev: total[3], brk: total[4], cost: total[5] }).toEqual({ rev: acc!.rev, brk: acc!.brk, cost: acc!.cost });
      expect(BigInt(total[6]!)).toBe(BigInt(acc!.rev) + BigInt(acc!.brk) - BigInt(acc!.cost));
      const groups = rows.filter((x) => x[0] !== 'TOTAL' && x[1] === 'USD');
      expect(groups.reduce((s, x) => s + BigInt(x[5]!), 0n)).toBe(BigInt(acc!.cost));
      const svg = readFileSync(chart, 'utf8');
      expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      if (by === 'model') {
        expect(groups.map((x) => x[0])).toEqual(expect.arrayContaining(['upscaler-4x', 'face-restore']));
        const upscaler = groups.find((x) => x[0] === 'upscaler-4x')!;
        expect(BigInt(upscaler[5]!)).toBe(45_000n);
      }
      if (by === 'package') expect(groups.map((x) => x[0])).toEqual(expect.arrayContaining(['pack-500', 'plan:pro']));
    }
    const table = await audit(['margin', '--by', 'model'], { DATABASE_URL: db.url });
    expect(table.stdout).toMatch(/upscaler-4x\s+USD/);
  });
});

describe('audit reconcile', () => {
  /** Events in the payments inbox, the table the payments service's migration creates. */
  async function paymentsInbox(url: string, events: { id: string; type: string; object: Record<string, unknown> }[]) {
    for (const e of events) {
      await sql(
        url,
        `INSERT INTO payments.stripe_events (event_id, type, object_id, livemode, stripe_created_at, received_at, payload, status, next_attempt_at, finished_at)
         VALUES ($1, $2, $3, false, '2026-11-01T09:00:00Z', '2026-11-01T09:00:01Z', $4, 'APPLIED', '2026-11-01T09:00:01Z', '2026-11-01T09:00:02Z')`,
        [e.id, e.type, String(e.object.id), JSON.stringify({ id: e.id, object: 'event', type: e.type, data: { object: e.object } })],
      );
    }
  }

  it('stripe: every exception kind both ways, and none when the inbox and the journal agree', async () => {
    const db = await copy('cli_stripe');
    const paid = (id: string, cents: number) => ({ id, object: 'checkout.session', mode: 'payment', payment_status: 'paid', amount_total: cents, currency: 'usd' });
    const agreeing = [
      { id: 'evt_1', type: 'checkout.session.completed', object: paid('cs_sample_1', 29_999) },
      // The same payment announced twice (async success after completion) is one payment.
      { id: 'evt_1b', type: 'checkout.session.async_payment_succeeded', object: paid('cs_sample_1', 29_999) },
      { id: 'evt_2', type: 'checkout.session.completed', object: paid('cs_sample_2', 999) },
      { id: 'evt_3', type: 'invoice.paid', object: { id: 'in_sample_1', billing_reason: 'subscription_create', amount_paid: 2_000, currency: 'usd' } },
      { id: 'evt_4', type: 'invoice.paid', object: { id: 'in_sample_2', billing_reason: 'subscription_cycle', amount_paid: 2_000, currency: 'usd' } },
      { id: 'evt_5', type: 'charge.refunded', object: { id: 'ch_sample_2', amount_refunded: 500, currency: 'usd' } },
    ];
    await paymentsInbox(db.url, agreeing);
    const ok = await audit(['reconcile', 'stripe'], { DATABASE_URL: db.url });
    expect(ok.stdout).toContain('0 exception(s)');
    expect(ok.code, ok.stdout).toBe(0);

    // A paid event the journal never got, an entry with no event, an amount that differs.
    await sql(db.url, `DELETE FROM payments.stripe_events WHERE event_id = 'evt_3'`);
    await sql(db.url, `UPDATE payments.stripe_events SET payload = jsonb_set(payload, '{data,object,amount_total}', '1099') WHERE event_id = 'evt_2'`);
    await sql(
      db.url,
      `INSERT INTO payments.stripe_events (event_id, type, object_id, livemode, stripe_created_at, received_at, payload, status, next_attempt_at, finished_at)
       VALUES ('evt_9', 'checkout.session.completed', 'cs_lost', false, now(), now(), $1, 'PARKED', now(), now())`,
      [JSON.stringify({ data: { object: paid('cs_lost', 4_999) } })],
    );
    const bad = await audit(['reconcile', 'stripe', '--csv'], { DATABASE_URL: db.url });
    expect(bad.code).toBe(1);
    const rows = bad.stdout.trim().split('\n').slice(1).map((l) => l.split(','));
    expect(rows.map((r) => [r[0], r[1], r[3], r[4]])).toEqual([
      ['AMOUNT_MISMATCH', 'purchase:cs_sample_2', '9990000', '10990000'],
      ['MISSING_EXTERNALLY', 'renewal:in_sample_1', '20000000', ''],
      ['MISSING_IN_JOURNAL', 'purchase:cs_lost', '', '49990000'],
    ]);
  });

  it('stripe with STRIPE_SECRET_KEY: Stripe\'s balance transactions, read with Stripe\'s client and paged, tie out with the journal by category', async () => {
    const db = await copy('cli_balance');
    const paid = (id: string, cents: number) => ({ id, object: 'checkout.session', mode: 'payment', payment_status: 'paid', amount_total: cents, currency: 'usd' });
    await paymentsInbox(db.url, [
      { id: 'evt_1', type: 'checkout.session.completed', object: paid('cs_sample_1', 29_999) },
      { id: 'evt_2', type: 'checkout.session.completed', object: paid('cs_sample_2', 999) },
      { id: 'evt_3', type: 'invoice.paid', object: { id: 'in_sample_1', billing_reason: 'subscription_create', amount_paid: 2_000, currency: 'usd' } },
      { id: 'evt_4', type: 'invoice.paid', object: { id: 'in_sample_2', billing_reason: 'subscription_cycle', amount_paid: 2_000, currency: 'usd' } },
      { id: 'evt_5', type: 'charge.refunded', object: { id: 'ch_sample_2', amount_refunded: 500, currency: 'usd' } },
    ]);
    // A local stand-in for Stripe's GET /v1/balance_transactions (a list object, paged by starting_after).
    const tx = (n: number, type: string, amount: number, category = type) => ({
      id: `txn_${String(n).padStart(4, '0')}`, object: 'balance_transaction', amount, currency: 'usd', type, reporting_category: category,
      created: 1_793_000_000 + n, fee: 0, net: amount, status: 'available',
    });
    const transactions = [
      tx(1, 'charge', 29_999), tx(2, 'charge', 999), tx(3, 'charge', 2_000), tx(4, 'charge', 2_000), tx(5, 'refund', -500),
      ...Array.from({ length: 150 }, (_, i) => tx(10 + i, 'stripe_fee', -1, 'fee')),
    ];
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      if (url.pathname !== '/v1/balance_transactions') return void res.writeHead(404).end();
      if (req.headers.authorization !== 'Bearer sk_test_audit') return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"type":"invalid_request_error"}}');
      seen.push(url.search);
      const limit = Number(url.searchParams.get('limit') ?? 10);
      const after = url.searchParams.get('starting_after');
      const from = after ? transactions.findIndex((t) => t.id === after) + 1 : 0;
      const data = transactions.slice(from, from + limit);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', url: '/v1/balance_transactions', has_more: from + limit < transactions.length, data }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const env = { DATABASE_URL: db.url, STRIPE_SECRET_KEY: 'sk_test_audit', STRIPE_API_BASE: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
      const ok = await audit(['reconcile', 'stripe'], env);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect(ok.stdout).toContain('reconcile stripe balance transactions: 2 journal items, 2 external items, 2 matched, 0 exception(s)');
      expect(seen).toHaveLength(2);
      expect(seen[1]).toContain('starting_after=txn_0104');

      transactions[4] = tx(5, 'refund', -600);
      const bad = await audit(['reconcile', 'stripe', '--csv'], env);
      expect(bad.code).toBe(1);
      expect(bad.stdout.trim().split('\n').slice(1).map((l) => l.split(',').slice(0, 5))).toEqual([['AMOUNT_MISMATCH', 'balance:refunds:USD', 'USD', '5000000', '6000000']]);
    } finally {
      server.close();
    }
  });

  it('stripe: a database without the payments inbox is a configuration error (exit 2)', async () => {
    const db = await copy('cli_noinbox');
    // A ledger database that never had the payments service's migration.
    await sql(db.url, 'DROP SCHEMA payments CASCADE');
    const r = await audit(['reconcile', 'stripe'], { DATABASE_URL: db.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no payments inbox (payments.stripe_events)');
  });

  it('wavespeed: captures against the billing listing, both ways, paging through it', async () => {
    const db = await copy('cli_ws');
    const key = 'ws-test-key';
    // A local stand-in for Wavespeed's billing listing (POST /api/v3/billings/search), paged.
    const billings = [
      { uuid: 'b1', billing_type: 'deduct', price: 0.03, created_at: '2026-11-01T09:01:00Z', prediction: { uuid: 'pred_sample_1', model_uuid: 'upscaler-4x' } },
      // Charged 0.0126 instead of 0.0125.
      { uuid: 'b2', billing_type: 'deduct', price: 0.0126, created_at: '2026-11-01T09:01:30Z', prediction: { uuid: 'pred_sample_2', model_uuid: 'face-restore' } },
      // A charge for a prediction no capture names.
      { uuid: 'b3', billing_type: 'deduct', price: 0.05, created_at: '2026-11-01T09:02:00Z', prediction: { uuid: 'pred_orphan', model_uuid: 'upscaler-4x' } },
      ...Array.from({ length: 150 }, (_, i) => ({ uuid: `f${i}`, billing_type: 'topup', price: 1, created_at: '2026-11-01T09:03:00Z', prediction: { uuid: '' } })),
    ];
    const requests: unknown[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (req.url !== '/api/v3/billings/search' || req.method !== 'POST') return void res.writeHead(404).end();
        if (req.headers.authorization !== `Bearer ${key}`) return void res.writeHead(401).end('{"code":401}');
        const q = JSON.parse(body) as { page: number; page_size: number };
        requests.push(q);
        const items = billings.slice((q.page - 1) * q.page_size, q.page * q.page_size);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 200, message: 'success', data: { page: q.page, total: billings.length, items } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const r = await audit(['reconcile', 'wavespeed', '--csv'], { DATABASE_URL: db.url, WAVESPEED_API_KEY: key, WAVESPEED_API_BASE: base });
      expect(r.code, r.stderr).toBe(1);
      const rows = r.stdout.trim().split('\n').slice(1).map((l) => l.split(','));
      expect(rows.map((x) => [x[0], x[1], x[3], x[4]])).toEqual([
        ['AMOUNT_MISMATCH', 'prediction:pred_sample_2', '12500', '12600'],
        ['MISSING_EXTERNALLY', 'prediction:pred_sample_3', '15000', ''],
        ['MISSING_IN_JOURNAL', 'prediction:pred_orphan', '', '50000'],
      ]);
      expect(requests).toHaveLength(2);
      const denied = await audit(['reconcile', 'wavespeed'], { DATABASE_URL: db.url, WAVESPEED_API_KEY: 'wrong', WAVESPEED_API_BASE: base });
      expect(denied.code).toBe(3);
      expect(denied.stderr).toContain('HTTP 401');
    } finally {
      server.close();
    }
  });
});

describe('bad arguments exit 2 with a clear message', () => {
  const cases: [string, string[], Record<string, string>, string][] = [
    ['unknown command', ['frobnicate'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, 'unknown command "frobnicate"'],
    ['no command', [], {}, 'usage: npm run audit'],
    ['a bad date', ['trial-balance', '--as-of', '2026-13-45'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, '--as-of: not a date or time: "2026-13-45"'],
    ['a date that is not a date', ['margin', '--from', 'yesterday'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, '--from: not a date or time: "yesterday"'],
    ['a bad sequence number', ['verify', '--from', '0'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, '--from: not an entry sequence number'],
    ['a sequence number that is not a number', ['verify', '--to', '12abc'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, '--to: not an entry sequence number: "12abc"'],
    ['an unknown option', ['verify', '--fast'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, "Unknown option '--fast'"],
    ['missing DATABASE_URL', ['verify'], {}, 'verify: DATABASE_URL (the ledger database; a read-only role is enough) is required'],
    ['a malformed DATABASE_URL', ['verify'], { DATABASE_URL: 'not a url' }, 'DATABASE_URL'],
    ['missing AUDIT_SIGNING_KEY', ['checkpoint'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, 'AUDIT_SIGNING_KEY (an ed25519 private key) is required'],
    ['a bad AUDIT_SIGNING_KEY', ['checkpoint'], { DATABASE_URL: 'postgres://x@127.0.0.1/x', AUDIT_SIGNING_KEY: 'nope' }, 'AUDIT_SIGNING_KEY: not a PEM key'],
    ['reconcile without a target', ['reconcile'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, 'say what to reconcile'],
    ['missing WAVESPEED_API_KEY', ['reconcile', 'wavespeed'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, 'WAVESPEED_API_KEY'],
    ['margin --by nonsense', ['margin', '--by', 'week'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, '--by: "week" is not one of day, model, package'],
    ['export without --out', ['export', '--from', '1', '--to', '2'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, 'export: --out DIR is required'],
    ['--checkpoints without a key', ['verify', '--checkpoints', 'f'], { DATABASE_URL: 'postgres://x@127.0.0.1/x' }, '--checkpoints and --public-key go together'],
  ];
  it.each(cases)('%s', async (_name, args, env, message) => {
    const r = await audit(args, env);
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toContain(message);
  });
});
