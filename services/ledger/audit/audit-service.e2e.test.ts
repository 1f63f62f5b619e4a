import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditServiceClient, type VerifyJournalResponse, type VerifyReport } from '../../generated/proto/credits/ledger/v1/audit.js';
import { Bucket } from '../../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../../lib/clock.js';
import { errorReason } from '../client/index.js';
import { startTestLedger, type TestLedger } from '../testing/ledger-harness.js';
import { tamper } from './testing/sample-journal.js';

// AuditService on the ledger's gRPC server (audit.proto): auditor and admin only; VerifyJournal
// streams progress then a report that locates damage; TrialBalance; the reconciliations.

describe('AuditService', () => {
  const clock = new ManualClock('2026-11-10T08:00:00.000Z');
  let t: TestLedger;
  let billing: http.Server;
  const billingItems: unknown[] = [];
  const clients: AuditServiceClient[] = [];

  const client = (role: 'auditor' | 'admin' | 'worker' | 'payments') => {
    const token = t.options.credentials.find((c) => c.role === role)!.token;
    const c = new AuditServiceClient(t.address, grpc.credentials.createInsecure());
    clients.push(c);
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    return { c, metadata };
  };
  const unary = <Req, Res>(role: 'auditor' | 'admin' | 'worker' | 'payments', method: 'trialBalance' | 'reconcileStripe' | 'reconcileWavespeed', req: Req) =>
    new Promise<Res>((resolve, reject) => {
      const { c, metadata } = client(role);
      (c[method] as unknown as (r: Req, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => void).call(c, req, metadata, (e, r) =>
        e ? reject(e) : resolve(r),
      );
    });
  const verify = async (role: 'auditor' | 'admin' | 'worker', req = { fromEntryId: 0n, toEntryId: 0n }) => {
    const { c, metadata } = client(role);
    const messages: VerifyJournalResponse[] = [];
    for await (const m of c.verifyJournal(req, metadata) as AsyncIterable<VerifyJournalResponse>) messages.push(m);
    const report = messages.at(-1)?.event?.$case === 'report' ? (messages.at(-1)!.event!.value as VerifyReport) : undefined;
    return { messages, report };
  };

  beforeAll(async () => {
    billing = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (req.headers.authorization !== 'Bearer ws-key') return void res.writeHead(401).end();
        const q = JSON.parse(body) as { page: number };
        const items = q.page === 1 ? billingItems : [];
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 200, data: { page: q.page, total: billingItems.length, items } }));
      });
    });
    await new Promise<void>((resolve) => billing.listen(0, '127.0.0.1', resolve));
    t = await startTestLedger({
      clock,
      options: { wavespeed: { baseUrl: `http://127.0.0.1:${(billing.address() as AddressInfo).port}`, apiKey: 'ws-key' } },
    });
    const { admin, payments, worker } = t.client;
    await admin.grant({ idempotencyKey: 'g1', userId: 'u1', credits: 50n, bucket: Bucket.BUCKET_BONUS });
    await payments.purchase({
      idempotencyKey: 'p1', userId: 'u1', credits: 100n, bucket: Bucket.BUCKET_PURCHASED, amountMicros: 10_000_000n, currency: 'USD',
      externalRef: 'pi_1', expiresAt: new Date('2027-01-01T00:00:00Z'),
    });
    for (let i = 0; i < 30; i++) {
      await worker.consume({
        idempotencyKey: `c${i}`, userId: 'u1', credits: 3n,
        upstream: { amountMicros: 1_000n, currency: 'USD', requestId: `pred_${i}`, model: 'upscaler-4x' },
      });
    }
    const hold = await worker.reserve({ idempotencyKey: 'r1', userId: 'u1', credits: 5n });
    await worker.capture({ idempotencyKey: 'k1', holdId: hold.holdId, credits: 4n });
    for (let i = 0; i < 29; i++) {
      billingItems.push({ uuid: `b${i}`, billing_type: 'deduct', price: 0.001, created_at: clock.now().toISOString(), prediction: { uuid: `pred_${i}` } });
    }
    billingItems.push({ uuid: 'bx', billing_type: 'deduct', price: 0.002, created_at: clock.now().toISOString(), prediction: { uuid: 'pred_x' } });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    billing?.close();
    await t?.close();
  });

  it('VerifyJournal streams progress and a report saying the journal is whole (auditor and admin)', async () => {
    for (const role of ['auditor', 'admin'] as const) {
      const { messages, report } = await verify(role);
      expect(report).toMatchObject({ whole: true, partial: false, findingCount: 0n, fromEntryId: 1n, toEntryId: 34n, entries: 34n });
      expect(report!.lastHash).toHaveLength(32);
      expect(messages.every((m, i) => (i === messages.length - 1 ? m.event?.$case === 'report' : m.event?.$case === 'progress'))).toBe(true);
    }
    const range = await verify('auditor', { fromEntryId: 3n, toEntryId: 10n });
    expect(range.report).toMatchObject({ whole: true, partial: true, entries: 8n, accounts: 0n });
    await t.expectInvariants();
  });

  it('other roles get PERMISSION_DENIED; a bad range is INVALID_ARGUMENT', async () => {
    await expect(verify('worker')).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await expect(unary('payments', 'trialBalance', {})).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await expect(verify('auditor', { fromEntryId: 9n, toEntryId: 3n })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('to_entry_id'),
    });
  });

  it('TrialBalance: per unit, summing to zero, as of a time', async () => {
    const tb = await unary<object, { balanced: boolean; cutEntryId: bigint; totals: { unit: string; balance: bigint }[]; rows: { code: string; balance: bigint }[] }>(
      'auditor', 'trialBalance', { asOf: clock.now() },
    );
    expect(tb.balanced).toBe(true);
    expect(tb.cutEntryId).toBe(34n);
    expect(tb.totals.map((x) => [x.unit, x.balance])).toEqual([['CREDIT', 0n], ['USD', 0n]]);
    expect(tb.rows.find((r) => r.code === 'upstream.wavespeed.cost.USD')!.balance).toBe(-30_000n);
    const before = await unary<object, { cutEntryId: bigint; rows: unknown[] }>('auditor', 'trialBalance', { asOf: new Date('2026-01-01T00:00:00Z') });
    expect(before).toMatchObject({ cutEntryId: 0n, rows: [] });
  });

  it('ReconcileWavespeed finds a capture with no upstream charge, an upstream charge with no capture; ReconcileStripe needs the payments inbox', async () => {
    const r = await unary<object, { reconciliation: { matched: bigint; exceptions: { kind: string; key: string; journalMicros?: bigint; externalMicros?: bigint }[] } }>(
      'auditor', 'reconcileWavespeed', {},
    );
    expect(r.reconciliation.matched).toBe(29n);
    expect(r.reconciliation.exceptions.map((e) => [e.kind, e.key, e.journalMicros, e.externalMicros])).toEqual([
      ['MISSING_EXTERNALLY', 'prediction:pred_29', 1_000n, undefined],
      ['MISSING_IN_JOURNAL', 'prediction:pred_x', undefined, 2_000n],
    ]);
    // A ledger database that never had the payments service's migration.
    await t.pool.query('DROP SCHEMA payments CASCADE');
    const stripe = await unary('auditor', 'reconcileStripe', {}).catch((e: grpc.ServiceError) => e);
    expect(stripe).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringContaining('payments inbox') });
    void errorReason;
  });

  it('VerifyJournal locates a lot whose expires_at was nulled by a superuser', async () => {
    const [lot] = (await t.pool.query<{ id: string }>(`SELECT account_id::text id FROM lots WHERE expires_at IS NOT NULL`)).rows;
    await tamper(t.db.url, 'UPDATE lots SET expires_at = NULL WHERE account_id = $1', [lot!.id]);
    const { report } = await verify('auditor');
    expect(report).toMatchObject({ whole: false, findingCount: 1n });
    expect(report!.first).toMatchObject({ entryId: 0n, table: 'lots', column: 'expires_at', key: `lot ${lot!.id}`, expected: '2027-01-01T00:00:00.000Z', found: 'null' });
    // Put it back so the harness's invariants hold at the end.
    await tamper(t.db.url, `UPDATE lots SET expires_at = '2027-01-01T00:00:00Z' WHERE account_id = $1`, [lot!.id]);
    await t.expectInvariants();
    void pg;
  });
});
