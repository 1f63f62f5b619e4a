import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type { PrismaClient };

/**
 * One pg pool per process, shared by the raw-SQL write path and by Prisma (through its pg
 * adapter), so the process has a single, bounded set of connections.
 */
export function createPool(databaseUrl: string, sizeMax: number): pg.Pool {
  return new pg.Pool({
    connectionString: databaseUrl,
    max: sizeMax,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    application_name: 'credit-ledger',
  });
}

export function createPrisma(pool: pg.Pool): PrismaClient {
  return new PrismaClient({ adapter: new PrismaPg(pool) });
}
