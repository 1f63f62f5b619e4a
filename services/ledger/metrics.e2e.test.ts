import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyJournal } from './audit/verify-journal.js';
import { Bucket, createLedgerClient, type LedgerClient } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { killChildLedgers, startChildLedger, type ChildLedger } from './testing/child-ledger.js';
import { testCredentials } from './testing/ledger-harness.js';
import { createTestDatabase, type TestDatabase } from '../testing/test-db.js';

// The ledger's Prometheus endpoint (LEDGER_METRICS_ADDR), scraped from a real ledger process.

describe('ledger /metrics', () => {
  let db: TestDatabase;
  let child: ChildLedger;
  let admin: LedgerClient;
  let worker: LedgerClient;
  beforeAll(async () => {
    db = await createTestDatabase();
    const credentials = testCredentials();
    child = await startChildLedger({ databaseUrl: db.url, credentials });
    admin = createLedgerClient(child.address, credentials.find((c) => c.role === 'admin')!.token);
    worker = createLedgerClient(child.address, credentials.find((c) => c.role === 'worker')!.token);
  });
  afterAll(async () => {
    admin?.close();
    worker?.close();
    await killChildLedgers();
    await db?.drop();
  });

  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${child.metricsPort}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    return res.text();
  };
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  it('counts calls by method and status, batches, open holds and health', async () => {
    await admin.grant({ idempotencyKey: 'g', userId: 'u-m', credits: 10n, bucket: Bucket.BUCKET_BONUS });
    await worker.reserve({ idempotencyKey: 'r', userId: 'u-m', credits: 4n });
    const refused = await settle(worker.consume({ idempotencyKey: 'c', userId: 'u-m', credits: 100n }));
    expect(refused.ok).toBe(false);
    const text = await scrape();
    expect(value(text, 'ledger_grpc_calls_total{method="Grant",code="OK"}')).toBe(1);
    expect(value(text, 'ledger_grpc_calls_total{method="Reserve",code="OK"}')).toBe(1);
    expect(value(text, 'ledger_grpc_calls_total{method="Consume",code="FAILED_PRECONDITION"}')).toBe(1);
    expect(value(text, 'ledger_grpc_call_seconds_count{method="Grant"}')).toBe(1);
    expect(value(text, 'ledger_batch_commands_count')).toBeGreaterThanOrEqual(3);
    expect(value(text, 'ledger_holds_open{state="open"}')).toBe(1);
    expect(value(text, 'ledger_serving')).toBe(1);
    expect(value(text, 'ledger_write_queue_length')).toBe(0);
    expect(text).toMatch(/^ledger_process_cpu_seconds_total /m);
    expect((await fetch(`http://127.0.0.1:${child.metricsPort}/other`)).status).toBe(404);

    // Open StreamJournal calls: one while a follower reads, none once it has cancelled.
    expect(value(text, 'ledger_streams_open')).toBe(0);
    const follower = new AbortController();
    for await (const _entry of admin.streamJournal(1n, follower.signal)) {
      expect(value(await scrape(), 'ledger_streams_open')).toBe(1);
      break;
    }
    follower.abort();
    for (let i = 0; value(await scrape(), 'ledger_streams_open') !== 0; i += 1) {
      if (i >= 100) throw new Error('the cancelled stream is still counted as open');
      await new Promise((r) => setTimeout(r, 20));
    }
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      expect((await verifyJournal(pool, { now: new Date(), holdSweepPeriodMs: 60_000 })).violations).toEqual([]);
    } finally {
      await pool.end();
    }
  });
});
