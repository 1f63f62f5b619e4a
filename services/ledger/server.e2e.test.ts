import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket } from '../generated/proto/credits/ledger/v1/ledger.js';
import { killChildLedgers, startChildLedger } from './testing/child-ledger.js';
import { HealthClient, healthCheck, type HealthResponse } from './testing/health-check.js';
import { startTestLedger, testCredentials, type TestLedger } from './testing/ledger-harness.js';
import { createTestDatabase } from '../testing/test-db.js';
import { verifyJournal } from './audit/verify-journal.js';
import { createLedgerClient, type LedgerClient } from './client/index.js';

// The server around the ledger (ledger README §6): grpc.health.v1, server reflection, and a
// graceful drain on SIGTERM.

// pg-pool's end() resolves before its connections have closed, so the DROP DATABASE … WITH (FORCE)
// that follows in the harness's close() can terminate a closing connection, and the pool re-emits
// that error; with no listener it would be an uncaught exception. Tests listen for it.
const quiet = <P extends { on(event: 'error', listener: () => void): unknown }>(pool: P): P => {
  pool.on('error', () => {});
  return pool;
};

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const reflectionProtoDir = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')),
  'build/proto',
);

/** One ServerReflectionInfo exchange per request, over one bidi stream. */
async function reflect(address: string, version: 'v1' | 'v1alpha', requests: Record<string, unknown>[]) {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: [reflectionProtoDir],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const Client = grpc.makeGenericClientConstructor(
    definition[`grpc.reflection.${version}.ServerReflection`] as grpc.ServiceDefinition,
    'ServerReflection',
  );
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, Record<string, unknown>>;
  };
  try {
    const stream = client.ServerReflectionInfo();
    const responses: Record<string, unknown>[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (r: Record<string, unknown>) => {
        responses.push(r);
        if (responses.length === requests.length) stream.end();
      });
      stream.on('error', reject);
      stream.on('end', resolve);
    });
    for (const r of requests) stream.write(r);
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error('reflection timed out')), 5_000))]);
    return responses;
  } finally {
    client.close();
  }
}

describe('server', () => {
  let t: TestLedger;
  beforeAll(async () => {
    t = await startTestLedger();
    quiet(t.pool);
  });
  afterAll(async () => {
    await killChildLedgers();
    await t?.close();
  });

  it('grpc.health.v1 Check answers SERVING for the server and for LedgerService, without credentials', async () => {
    expect((await healthCheck(t.address, '')).status).toBe('SERVING');
    expect((await healthCheck(t.address, 'credits.ledger.v1.LedgerService')).status).toBe('SERVING');
    expect((await healthCheck(t.address, 'credits.ledger.v1.AuditService')).status).toBe('SERVING');
    const unknown = await healthCheck(t.address, 'no.such.Service').then(
      () => 'OK',
      (e: grpc.ServiceError) => grpc.status[e.code],
    );
    expect(unknown).toBe('NOT_FOUND');
    await t.expectInvariants();
  });

  for (const version of ['v1', 'v1alpha'] as const) {
    it(`server reflection (${version}) serves the real descriptors: file names, dependencies, proto field names`, async () => {
      const [list, file, errorInfo, badRequest, missing, audit] = await reflect(t.address, version, [
        { list_services: '' },
        { file_containing_symbol: 'credits.ledger.v1.LedgerService' },
        { file_containing_symbol: 'google.rpc.ErrorInfo' },
        { file_containing_symbol: 'google.rpc.BadRequest' },
        { file_containing_symbol: 'no.such.Symbol' },
        { file_containing_symbol: 'credits.ledger.v1.AuditService' },
      ]);
      const services = ((list!.list_services_response as { service: { name: string }[] }).service ?? []).map((s) => s.name);
      expect(services.sort()).toEqual([
        'credits.ledger.v1.AuditService', 'credits.ledger.v1.LedgerService', 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
      ]);
      const files = (r: Record<string, unknown> | undefined) =>
        (r!.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto.map((b) =>
          fromBinary(FileDescriptorProtoSchema, b),
        );
      const ledgerFiles = files(file);
      expect(ledgerFiles.map((f) => f.name).sort()).toEqual(['credits/ledger/v1/ledger.proto', 'google/protobuf/timestamp.proto']);
      const ledgerFile = ledgerFiles.find((f) => f.name === 'credits/ledger/v1/ledger.proto')!;
      expect(ledgerFile.dependency).toEqual(['google/protobuf/timestamp.proto']);
      const consume = ledgerFile.messageType.find((m) => m.name === 'ConsumeRequest')!;
      expect(consume.field.map((f) => f.name)).toContain('idempotency_key');
      expect(ledgerFile.service[0]!.method.map((m) => m.name)).toContain('Consume');
      expect(files(errorInfo).map((f) => f.name)).toEqual(['google/rpc/error_details.proto']);
      expect(files(badRequest)[0]!.messageType.map((m) => m.name)).toEqual(expect.arrayContaining(['ErrorInfo', 'BadRequest']));
      expect((missing!.error_response as { error_code: number }).error_code).toBe(grpc.status.NOT_FOUND);
      const auditFiles = files(audit);
      expect(auditFiles.map((f) => f.name).sort()).toEqual(['credits/ledger/v1/audit.proto', 'google/protobuf/timestamp.proto']);
      const auditFile = auditFiles.find((f) => f.name === 'credits/ledger/v1/audit.proto')!;
      expect(auditFile.service[0]!.method.map((m) => m.name)).toEqual(['VerifyJournal', 'TrialBalance', 'ReconcileStripe', 'ReconcileWavespeed']);
      expect(auditFile.service[0]!.method[0]!.serverStreaming).toBe(true);
      expect(auditFile.messageType.find((m) => m.name === 'Finding')!.field.map((f) => f.name)).toContain('entry_id');
    });
  }

  describe('buf curl, a reflection client nobody here wrote', () => {
    const buf = path.join(repoRoot, 'node_modules/.bin/buf');
    const url = (method = '') => `http://${t.address}/${method}`;
    function curl(args: string[], token?: string): Promise<{ code: number; stdout: string; stderr: string }> {
      const auth = token ? ['-H', `authorization: Bearer ${token}`] : [];
      return new Promise((resolve, reject) =>
        execFile(buf, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...auth, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
          if (error && typeof error.code !== 'number') return reject(error);
          resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
        }),
      );
    }
    const tokenOf = (role: string) => t.options.credentials.find((c) => c.role === role)!.token;

    it('lists the services and the methods', async () => {
      const services = await curl(['--list-services', url()]);
      expect(services.code).toBe(0);
      expect(services.stdout.trim().split('\n').sort()).toEqual([
        'credits.ledger.v1.AuditService',
        'credits.ledger.v1.LedgerService',
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
      ]);
      const methods = await curl(['--list-methods', url()]);
      expect(methods.stdout).toContain('credits.ledger.v1.LedgerService/Consume');
      expect(methods.stdout).toContain('grpc.health.v1.Health/Check');
      expect(methods.stdout).toContain('credits.ledger.v1.AuditService/VerifyJournal');
      // An auditor calls TrialBalance through reflection alone.
      const tb = await curl(['-d', JSON.stringify({ as_of: '2030-01-01T00:00:00Z' }), url('credits.ledger.v1.AuditService/TrialBalance')], tokenOf('auditor'));
      expect(tb.code, tb.stderr).toBe(0);
      expect(JSON.parse(tb.stdout)).toMatchObject({ balanced: true });
      await t.expectInvariants();
    });

    it('calls Grant and GetBalance with proto field names, and shows a refusal with its code and ErrorInfo', async () => {
      const admin = tokenOf('admin');
      const grant = await curl(
        ['-d', JSON.stringify({ idempotency_key: 'buf-curl-1', user_id: 'u-buf', credits: '7', bucket: 'BUCKET_BONUS' }), url('credits.ledger.v1.LedgerService/Grant')],
        admin,
      );
      expect(grant.code).toBe(0);
      expect(JSON.parse(grant.stdout)).toMatchObject({ entryId: expect.any(String), lotId: expect.any(String) });
      const balance = await curl(['-d', JSON.stringify({ user_id: 'u-buf' }), url('credits.ledger.v1.LedgerService/GetBalance')], tokenOf('auditor'));
      expect(JSON.parse(balance.stdout)).toMatchObject({ userId: 'u-buf', available: '7' });
      const refused = await curl(
        ['-d', JSON.stringify({ idempotency_key: 'buf-curl-2', user_id: 'u-buf', credits: '8' }), url('credits.ledger.v1.LedgerService/Consume')],
        tokenOf('worker'),
      );
      expect(refused.code).not.toBe(0);
      const error = JSON.parse(refused.stderr) as { code: string; message: string; details: { type: string }[] };
      expect(error.code).toBe('failed_precondition');
      expect(error.message).toMatch(/7 available credits; 8 requested/);
      expect(error.details.map((d) => d.type)).toEqual(['google.rpc.ErrorInfo']);
      const invalid = await curl(
        ['-d', JSON.stringify({ idempotency_key: 'buf-curl-3', user_id: 'u-buf', credits: '-1' }), url('credits.ledger.v1.LedgerService/Consume')],
        tokenOf('worker'),
      );
      const invalidError = JSON.parse(invalid.stderr) as { code: string; message: string; details: { type: string }[] };
      expect(invalidError.code).toBe('invalid_argument');
      expect(invalidError.message).toMatch(/^credits: /);
      expect(invalidError.details.map((d) => d.type)).toEqual(['google.rpc.BadRequest']);
      await t.expectInvariants();
    });
  });

  it('drains on SIGTERM: calls succeed (and are journaled) or fail UNAVAILABLE/CANCELLED; exit 0; invariants hold', async () => {
    const db = await createTestDatabase();
    const pool = quiet(new pg.Pool({ connectionString: db.url, max: 2 }));
    const credentials = testCredentials();
    const tokenOf = (role: string) => credentials.find((c) => c.role === role)!.token;
    const opened: LedgerClient[] = [];
    try {
      // A long grace period: a drain that waited for it (a stream left open) would show as a slow exit.
      const child = await startChildLedger({ databaseUrl: db.url, credentials, env: { LEDGER_DRAIN_GRACE_MS: '30000' } });
      const admin = createLedgerClient(child.address, tokenOf('admin'));
      const workers = Array.from({ length: 4 }, () =>
        createLedgerClient(child.address, tokenOf('worker'), { 'grpc.use_local_subchannel_pool': 1 }),
      );
      opened.push(admin, ...workers);
      for (let u = 0; u < 5; u += 1) {
        await admin.grant({ idempotencyKey: `drain-seed-${u}`, userId: `drain-u${u}`, credits: 100_000n, bucket: Bucket.BUCKET_BONUS });
      }

      // Watch health: it must turn NOT_SERVING when the drain starts.
      const seen: string[] = [];
      const watchClient = new HealthClient(child.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
        watch(req: { service: string }): grpc.ClientReadableStream<HealthResponse>;
      };
      const watch = watchClient.watch({ service: 'credits.ledger.v1.LedgerService' });
      const sawNotServing = new Promise<void>((resolve) => {
        watch.on('data', (r: HealthResponse) => {
          seen.push(r.status);
          // Once seen, hang up so the drain is not kept waiting on this stream.
          if (r.status === 'NOT_SERVING') {
            watch.cancel();
            resolve();
          }
        });
        watch.on('error', () => resolve());
      });

      // A journal follower: the drain must end its endless stream rather than wait on it.
      const auditor = createLedgerClient(child.address, tokenOf('auditor'));
      opened.push(auditor);
      const streamed: { seq: bigint; hash: Buffer }[] = [];
      const follower = (async () => {
        try {
          for await (const entry of auditor.streamJournal(1n)) {
            streamed.push({ seq: entry.entryId, hash: Buffer.from(entry.hash) });
            if (streamed.length >= 100_000) break;
          }
          return 'ended';
        } catch (error) {
          return `error ${grpc.status[(error as grpc.ServiceError).code]}`;
        }
      })();

      interface Result {
        key: string;
        ok: boolean;
        entryId?: bigint;
        code?: grpc.status;
        details?: string;
        afterSignal: boolean;
      }
      const results: Result[] = [];
      let signalled = false;
      let signalAt!: () => void;
      const signalPoint = new Promise<void>((r) => (signalAt = r));
      const loop = async (i: number) => {
        for (let j = 0; j < 2_000; j += 1) {
          const k = `drain-${i}-${j}`;
          const afterSignal = signalled;
          try {
            const r = await workers[i % workers.length]!.consume({ idempotencyKey: k, userId: `drain-u${i % 5}`, credits: 1n }, { timeoutMs: 20_000 });
            results.push({ key: k, ok: true, entryId: r.entryId, afterSignal });
            if (results.length >= 300) signalAt();
          } catch (error) {
            const e = error as grpc.ServiceError;
            // A call sent just before the signal may be refused by the draining server: what
            // matters is that no call fails while the server is still up.
            results.push({ key: k, ok: false, code: e.code, details: e.details, afterSignal: signalled });
            return;
          }
        }
      };
      const burst = Promise.all(Array.from({ length: 24 }, (_, i) => loop(i)));
      await Promise.race([signalPoint, new Promise((r) => setTimeout(r, 20_000))]);
      expect(results.length).toBeGreaterThanOrEqual(300);
      signalled = true;
      const signalledAt = Date.now();
      child.signal('SIGTERM');
      await Promise.race([sawNotServing, new Promise((r) => setTimeout(r, 5_000))]);
      watch.cancel();
      const exit = await Promise.race([child.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
      const exitMs = Date.now() - signalledAt;
      await burst;
      watchClient.close();
      const followerEnd = await Promise.race([follower, new Promise((r) => setTimeout(() => r('still open'), 5_000))]);

      expect(exit).toEqual({ code: 0, signal: null });
      expect(exitMs).toBeLessThan(10_000);
      expect(['ended', 'error UNAVAILABLE', 'error CANCELLED']).toContain(followerEnd);
      expect(seen[0]).toBe('SERVING');
      expect(seen).toContain('NOT_SERVING');
      const failures = results.filter((r) => !r.ok);
      // Nothing failed before the signal; after it, only UNAVAILABLE or CANCELLED.
      expect(failures.filter((r) => !r.afterSignal)).toEqual([]);
      expect(failures.map((r) => grpc.status[r.code!]).filter((c) => c !== 'UNAVAILABLE' && c !== 'CANCELLED')).toEqual([]);
      expect(failures.length).toBe(24); // every loop ended on a refusal once the server was gone

      const { rows } = await pool.query<{ idempotency_key: string; seq: string }>(
        `SELECT idempotency_key, seq::text FROM entries WHERE idempotency_key LIKE 'drain-%' AND kind = 'CONSUME'`,
      );
      const journal = new Map(rows.map((r) => [r.idempotency_key, BigInt(r.seq)]));
      const successes = results.filter((r) => r.ok);
      // Every success is in the journal under its key, as the entry it was answered with.
      expect(successes.filter((r) => journal.get(r.key) !== r.entryId).map((r) => r.key)).toEqual([]);
      // A drain answers every call it applied: nothing refused was written.
      expect(failures.filter((r) => journal.has(r.key)).map((r) => `${r.key}: ${grpc.status[r.code!]} ${r.details}`)).toEqual([]);
      expect(journal.size).toBe(successes.length);

      // What the follower saw is the journal's prefix, in order, without gaps, hash for hash.
      expect(streamed.length).toBeGreaterThan(0);
      expect(streamed.map((e) => e.seq)).toEqual(streamed.map((_, i) => BigInt(i + 1)));
      const hashes = await pool.query<{ seq: string; hash: Buffer }>('SELECT seq::text, hash FROM entries WHERE seq <= $1 ORDER BY entries.seq', [
        streamed.length,
      ]);
      expect(hashes.rows.map((r) => r.hash.toString('hex'))).toEqual(streamed.map((e) => e.hash.toString('hex')));

      const report = await verifyJournal(pool, { now: new Date(), holdSweepPeriodMs: 1_000 });
      expect(report.violations).toEqual([]);
      console.info(
        `drain: ${successes.length} succeeded (${successes.filter((r) => r.afterSignal).length} sent after SIGTERM), ` +
          `${failures.length} refused (${[...new Set(failures.map((r) => grpc.status[r.code!]))].join(',')}); ` +
          `exit after ${exitMs} ms; follower saw ${streamed.length} entries and ${followerEnd}`,
      );
    } finally {
      for (const c of opened) c.close();
      await pool.end();
      await db.drop();
    }
  });
});
