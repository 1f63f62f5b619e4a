import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestCerts, type TestCerts } from '../testing/test-certs.js';
import { createTestDatabase, type TestDatabase } from '../testing/test-db.js';
import { verifyJournal } from './audit/verify-journal.js';
import { Bucket, createLedgerClient, type ClientTls } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { killChildLedgers, startChildLedger, type ChildLedger } from './testing/child-ledger.js';
import { testCredentials } from './testing/ledger-harness.js';

// Server TLS and mutual TLS from LEDGER_TLS_CERT / LEDGER_TLS_KEY / LEDGER_TLS_CLIENT_CA, with
// certificates this test makes; plaintext stays the default, with a warning off loopback.

describe('TLS', () => {
  let db: TestDatabase;
  let certs: TestCerts;
  const credentials = testCredentials();
  const admin = credentials.find((c) => c.role === 'admin')!.token;
  beforeAll(async () => {
    db = await createTestDatabase();
    certs = makeTestCerts();
  });
  afterAll(async () => {
    await killChildLedgers();
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      expect((await verifyJournal(pool, { now: new Date(), holdSweepPeriodMs: 60_000 })).violations).toEqual([]);
    } finally {
      await pool.end();
    }
    await db?.drop();
    certs?.remove();
  });

  async function call(ledger: ChildLedger, tls: ClientTls | undefined, key: string): Promise<string> {
    const client = createLedgerClient(ledger.address, admin, {}, tls);
    try {
      const o = await settle(client.grant({ idempotencyKey: key, userId: 'u-tls', credits: 1n, bucket: Bucket.BUCKET_BONUS }, { timeoutMs: 5_000 }));
      return o.ok ? 'OK' : status[o.error.code]!;
    } finally {
      client.close();
    }
  }

  it('server TLS: a client trusting the server CA is served; plaintext and a foreign CA are not', async () => {
    const ledger = await startChildLedger({
      databaseUrl: db.url,
      credentials,
      env: { LEDGER_TLS_CERT: certs.file('server.pem'), LEDGER_TLS_KEY: certs.file('server.key') },
    });
    expect(await call(ledger, { caPem: certs.pem('server-ca.pem') }, 'tls-1')).toBe('OK');
    expect(await call(ledger, undefined, 'tls-2')).toBe('UNAVAILABLE');
    expect(await call(ledger, { caPem: certs.pem('other-ca.pem') }, 'tls-3')).toBe('UNAVAILABLE');
    expect((await ledger.stop()).code).toBe(0);
  });

  it('mutual TLS: only clients with a certificate from the client CA are served', async () => {
    const ledger = await startChildLedger({
      databaseUrl: db.url,
      credentials,
      env: {
        LEDGER_TLS_CERT: certs.file('server.pem'),
        LEDGER_TLS_KEY: certs.file('server.key'),
        LEDGER_TLS_CLIENT_CA: certs.file('client-ca.pem'),
      },
    });
    const withCert: ClientTls = { caPem: certs.pem('server-ca.pem'), certPem: certs.pem('client.pem'), keyPem: certs.pem('client.key') };
    expect(await call(ledger, withCert, 'mtls-1')).toBe('OK');
    expect(await call(ledger, { caPem: certs.pem('server-ca.pem') }, 'mtls-2')).toBe('UNAVAILABLE');
    expect(await call(ledger, undefined, 'mtls-3')).toBe('UNAVAILABLE');
    expect((await ledger.stop()).code).toBe(0);
  });

  it('plaintext on a non-loopback address logs a warning; TLS there does not; loopback plaintext is quiet', async () => {
    const warned = (l: ChildLedger) => l.logs.some((line) => line.level === 40 && /plaintext gRPC on a non-loopback address/.test(String(line.msg)));
    const open = await startChildLedger({ databaseUrl: db.url, credentials, env: { LEDGER_GRPC_ADDR: '0.0.0.0:0' } });
    const secured = await startChildLedger({
      databaseUrl: db.url,
      credentials,
      env: { LEDGER_GRPC_ADDR: '0.0.0.0:0', LEDGER_TLS_CERT: certs.file('server.pem'), LEDGER_TLS_KEY: certs.file('server.key') },
    });
    const local = await startChildLedger({ databaseUrl: db.url, credentials });
    expect([warned(open), warned(secured), warned(local)]).toEqual([true, false, false]);
    for (const l of [open, secured, local]) await l.stop();
  });

  it('configuration: a certificate without its key (or a client CA without both) stops the start, naming the variables', async () => {
    await expect(
      startChildLedger({ databaseUrl: db.url, credentials, env: { LEDGER_TLS_CERT: certs.file('server.pem') }, readyTimeoutMs: 10_000 }),
    ).rejects.toThrow(/LEDGER_TLS_CERT and LEDGER_TLS_KEY go together/);
  });
});
