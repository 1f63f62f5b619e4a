import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, createLedgerClient } from '../services/ledger/client/index.js';
import { testCredentials } from '../services/ledger/testing/ledger-harness.js';
import { createTestRoles, type TestRoles } from '../services/ledger/testing/ledger-roles.js';
import { createTestDatabase, type TestDatabase } from '../services/testing/test-db.js';
import { alive, startSystem, type RunningSystem } from './testing/npm-start.js';

// `npm start` stopped as a supervisor stops it: SIGTERM to the npm process itself. npm passes
// the signal to its script's process only; the script must therefore be the app (exec), not a
// shell or a tsx wrapper that would leave the app running.

describe('npm start', () => {
  let db: TestDatabase;
  let roles: TestRoles;
  let dataDir: string;
  let system: RunningSystem | null = null;
  beforeAll(async () => {
    db = await createTestDatabase();
    // As in production: migrations as the owner, the ledger as the app role (so it has no
    // reason to warn about its role).
    roles = await createTestRoles(db.url);
    dataDir = await mkdtemp(path.join(tmpdir(), 'start-e2e-'));
  });
  afterAll(async () => {
    system?.kill();
    await db?.drop();
    await roles?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves, and SIGTERM to the npm process stops every process it started, logging no error', async () => {
    const credentials = testCredentials();
    system = await startSystem({
      DATABASE_URL: roles.urlAs(roles.app, db.url),
      DATABASE_MIGRATION_URL: roles.urlAs(roles.owner, db.url),
      // The payments service keeps its own schema, outside the ledger roles' grants.
      PAYMENTS_DATABASE_URL: db.url,
      PAYMENTS_HTTP_ADDR: '127.0.0.1:0',
      LEDGER_CREDENTIALS: JSON.stringify(credentials),
      LEDGER_GRPC_ADDR: '127.0.0.1:0',
      LEDGER_METRICS_ADDR: '127.0.0.1:0',
      // The machine's Redis, under a key prefix of this run's own.
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      WORKER_QUEUE_PREFIX: `test-${process.pid}-${Date.now()}`,
      WORKER_METRICS_ADDR: '127.0.0.1:0',
      LEDGER_DRAIN_GRACE_MS: '3000',
      DATA_DIR: dataDir,
    });
    const admin = createLedgerClient(String(system.ready.ledger), credentials.find((c) => c.role === 'admin')!.token);
    await admin.grant({ idempotencyKey: 'start-e2e', userId: 'u-start', credits: 5n, bucket: Bucket.BUCKET_BONUS });
    expect((await admin.getBalance({ userId: 'u-start' })).available).toBe(5n);
    admin.close();

    const started = system.descendants();
    expect(started.length).toBeGreaterThan(0);
    const stopAt = Date.now();
    system.child.kill('SIGTERM');
    const exit = await system.exited;
    // Within the drain grace (3 s) plus process exit.
    expect(Date.now() - stopAt).toBeLessThan(8_000);
    expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);
    for (let i = 0; i < 50 && started.some(alive); i += 1) await new Promise((r) => setTimeout(r, 100));
    expect(started.filter(alive)).toEqual([]);
    expect(system.lines.some((l) => l.msg === 'stopped')).toBe(true);
    // pino levels: 40 warn, 50 error, 60 fatal.
    expect(system.lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
    expect(system.other.filter((l) => /error/i.test(l))).toEqual([]);
  });
});
