import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { expect } from 'vitest';
import { ManualClock, type Clock } from '../../lib/clock.js';
import { defaultDbTimeouts, type DbTimeouts } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { verifyJournal, type InvariantReport } from '../audit/verify-journal.js';
import { createLedgerClient, type LedgerClient } from '../client/index.js';
import { Ledger, type LedgerOptions } from '../ledger.js';
import { allPools, createLedgerPools } from '../pools.js';
import type { Credential, Role } from '../grpc/auth.js';
import { createTestDatabase, type TestDatabase } from '../../testing/test-db.js';

export const roles: Role[] = ['admin', 'payments', 'worker', 'auditor'];

export function testCredentials(): Credential[] {
  return roles.map((role) => ({ name: `${role}-svc`, token: `${role}-${randomBytes(16).toString('hex')}`, role }));
}

export function ledgerOptions(overrides: Partial<LedgerOptions> = {}): LedgerOptions {
  return {
    grpcAddr: '127.0.0.1:0',
    credentials: testCredentials(),
    currencies: ['USD', 'EUR'],
    batchSizeMax: 256,
    queueLengthMax: 10_000,
    holdTtlMsDefault: 60_000,
    holdTtlMsMax: 3_600_000,
    holdLifetimeMsMax: 21_600_000,
    holdSweepPeriodMs: 50,
    holdSweepBatchMax: 500,
    expirySweepPeriodMs: 50,
    expirySweepBatchMax: 500,
    drainGraceMs: 2_000,
    streamsMax: 64,
    healthCheckPeriodMs: 200,
    writerStuckMs: 5_000,
    // Off: test ledgers mostly run on a manual clock, days away from the database's.
    clockSkewMsMax: 0,
    ...overrides,
  };
}

export interface TestLedger {
  db: TestDatabase;
  pool: pg.Pool;
  /** The batch writer's pipelined pool. */
  writePool: pg.Pool;
  /** Journal reads and AuditService, with the read statement timeout. */
  readPool: pg.Pool;
  /** The sweepers and the health probe. */
  backgroundPool: pg.Pool;
  clock: Clock;
  ledger: Ledger;
  address: string;
  options: LedgerOptions;
  /** A client per role, authenticated with that role's token. */
  client: Record<Role, LedgerClient>;
  clientFor(role: Role): LedgerClient;
  verify(): Promise<InvariantReport>;
  /** Asserts every invariant of ledger README §4 holds; every ledger test ends with it. */
  expectInvariants(): Promise<InvariantReport>;
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  options?: Partial<LedgerOptions>;
  /** Start the hold sweeper's timer (tests usually call sweepOnce themselves). */
  sweeper?: boolean;
  /** Reuse a database (a second ledger process on the same journal). */
  db?: TestDatabase;
  /** Database timeouts of the ledger's pools (defaultDbTimeouts when absent). */
  timeouts?: DbTimeouts;
  /** The readers' pool's statement timeout (LEDGER_DB_READ_STATEMENT_TIMEOUT_MS; 5000 when absent). */
  readStatementTimeoutMs?: number;
  /** The readers' pool's size (LEDGER_DB_READ_POOL_SIZE; 4 when absent). */
  readPoolSize?: number;
  /** Rewrites the database URL the ledger connects with (e.g. through a TcpProxy). */
  connectVia?: (url: string) => string;
}

/** A real ledger on a fresh database, served over gRPC on 127.0.0.1:0. */
export async function startTestLedger(start: StartOptions = {}): Promise<TestLedger> {
  const db = start.db ?? (await createTestDatabase());
  const url = start.connectVia ? start.connectVia(db.url) : db.url;
  const pools = createLedgerPools(url, {
    poolSize: 8,
    readPoolSize: start.readPoolSize ?? 4,
    timeouts: start.timeouts ?? defaultDbTimeouts,
    readStatementTimeoutMs: start.readStatementTimeoutMs ?? 5_000,
  });
  const { pool, writePool, readPool, backgroundPool } = pools;
  // Dropping the database at the end terminates connections the pools are still closing; that
  // is expected then and must not surface as an uncaught error.
  for (const p of allPools(pools)) p.on('error', () => {});
  const clock = start.clock ?? new ManualClock('2026-11-24T12:00:00.000Z');
  const options = ledgerOptions(start.options);
  const log = createLogger('ledger-test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const ledger = await Ledger.create({ ...pools, clock, log, options });
  const port = await ledger.start('127.0.0.1:0', start.sweeper ?? false);
  const address = `127.0.0.1:${port}`;
  const clients = new Map<Role, LedgerClient>();
  const clientFor = (role: Role) => {
    let c = clients.get(role);
    if (!c) {
      const credential = options.credentials.find((x) => x.role === role)!;
      c = createLedgerClient(address, credential.token);
      clients.set(role, c);
    }
    return c;
  };
  const client = Object.fromEntries(roles.map((r) => [r, clientFor(r)])) as Record<Role, LedgerClient>;
  const verify = () =>
    verifyJournal(pool, { now: clock.now(), holdSweepPeriodMs: options.holdSweepPeriodMs, checkGetBalance: true });
  return {
    db,
    pool,
    writePool,
    readPool,
    backgroundPool,
    clock,
    ledger,
    address,
    options,
    client,
    clientFor,
    verify,
    async expectInvariants() {
      // Invariant 7 allows a hold to outlive its TTL by one sweeper period. With the sweeper's
      // timer off and a manual clock, that period is the test's to end: the pass it would have
      // run is run here, through the real sweeper.
      if (!(start.sweeper ?? false)) await ledger.sweeper.sweepOnce();
      const report = await verify();
      expect(report.violations).toEqual([]);
      return report;
    },
    async close() {
      for (const c of clients.values()) c.close();
      await ledger.stop();
      await Promise.all(allPools(pools).map((p) => p.end()));
      if (!start.db) await db.drop();
    },
  };
}
