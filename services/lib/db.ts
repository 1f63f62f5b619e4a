import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type { PrismaClient };

/**
 * The process's pg pools: one shared by reads and Prisma (through its pg adapter), and a small
 * pipelined one for the batch writer, which holds one connection per batch in flight.
 */
export function createPool(databaseUrl: string, sizeMax: number, options: { pipeline?: boolean } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: sizeMax,
    // pg's pipeline mode sends queries without waiting for earlier answers; only the ledger's
    // batch writer uses it (its statements are written to be sent together).
    ...(options.pipeline ? { pipeline: true } : {}),
    connectionTimeoutMillis: 5_000,
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
export async function closePool(pool: pg.Pool): Promise<void> {
  await pool.end();
  await Promise.all([...(openConnections.get(pool) ?? [])]);
}

export function createPrisma(pool: pg.Pool): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg(pool) });
}
