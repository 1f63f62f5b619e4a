import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type { PrismaClient };

/**
 * The process's pg pools: one shared by reads and Prisma (through its pg adapter), and a small
 * pipelined one for the batch writer, which holds one connection per batch in flight.
 */
export function createPool(databaseUrl: string, sizeMax: number, options: { pipeline?: boolean } = {}): pg.Pool {
  return new pg.Pool({
    connectionString: databaseUrl,
    max: sizeMax,
    // pg's pipeline mode sends queries without waiting for earlier answers; only the ledger's
    // batch writer uses it (its statements are written to be sent together).
    ...(options.pipeline ? { pipeline: true } : {}),
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: 'credit-ledger',
  });
}

export function createPrisma(pool: pg.Pool): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg(pool) });
}
