import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type { PrismaClient };

/**
 * pg pools for the services; the ledger's are split by who waits on them (readers, the batch
 * writer, the sweepers and health probe, the rest), see services/ledger/pools.ts.
 */
/**
 * Bounds on every connection, so that a stalled database or network costs a bounded wait and
 * never holds a lock for long: the server cancels a statement after `statementTimeoutMs`, gives
 * up waiting for a lock after `lockTimeoutMs`, and ends a session left idle inside a transaction
 * (its client frozen, its network half-open) after `idleInTransactionTimeoutMs`, which releases
 * its locks; the client gives up on an answer after `queryTimeoutMs`, and TCP keepalive finds
 * dead peers.
 */
export interface DbTimeouts {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
  queryTimeoutMs: number;
  connectTimeoutMs: number;
}

export const defaultDbTimeouts: DbTimeouts = {
  statementTimeoutMs: 10_000,
  lockTimeoutMs: 5_000,
  idleInTransactionTimeoutMs: 10_000,
  queryTimeoutMs: 15_000,
  connectTimeoutMs: 5_000,
};

export function createPool(
  databaseUrl: string,
  sizeMax: number,
  options: { pipeline?: boolean; timeouts?: DbTimeouts } = {},
): pg.Pool {
  const t = options.timeouts ?? defaultDbTimeouts;
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: sizeMax,
    // pg's pipeline mode sends queries without waiting for earlier answers; only the ledger's
    // batch writer uses it (its statements are written to be sent together).
    ...(options.pipeline ? { pipeline: true } : {}),
    connectionTimeoutMillis: t.connectTimeoutMs,
    statement_timeout: t.statementTimeoutMs,
    lock_timeout: t.lockTimeoutMs,
    idle_in_transaction_session_timeout: t.idleInTransactionTimeoutMs,
    query_timeout: t.queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'credit-ledger',
  });
  trackConnections(pool);
  return pool;
}

/** The connections each pool has open, so closePool can wait for their sockets to close. */
const openConnections = new WeakMap<pg.Pool, Set<Promise<void>>>();

function trackConnections(pool: pg.Pool): void {
  const open = new Set<Promise<void>>();
  openConnections.set(pool, open);
  pool.on('connect', (client) => {
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    open.add(ended);
    void ended.then(() => open.delete(ended));
  });
}

/**
 * Ends a pool and waits until every one of its connections has closed. pg-pool's end() resolves
 * once it has asked its clients to end, before their sockets close; stopping PostgreSQL in that
 * window makes the server terminate them (57P01), which the pool reports as an error.
 */
export async function closePool(pool: pg.Pool, waitMs = 5_000): Promise<void> {
  await pool.end();
  // Bounded: a connection to a database that stopped answering never confirms its close.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([...(openConnections.get(pool) ?? [])]),
    new Promise((resolve) => (timer = setTimeout(resolve, waitMs))),
  ]);
  clearTimeout(timer);
}

export function createPrisma(pool: pg.Pool): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg(pool) });
}
