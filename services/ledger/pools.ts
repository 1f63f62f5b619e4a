import type pg from 'pg';
import { closePool, createPool, type DbTimeouts } from '../lib/db.js';

/**
 * The ledger process's PostgreSQL pools, split by who waits on them, so that no kind of work
 * can starve another by taking every connection:
 *
 * - `writePool`: the batch writer only (pipelined). One batch runs at a time per process, so
 *   two connections cover it and a retry.
 * - `readPool`: client-facing journal reads (StreamJournal, GetEntry, ListEntries) and
 *   AuditService, with a tighter statement timeout. Fifty followers polling the journal or a
 *   ListEntries scanning it queue here, behind each other, and nowhere else.
 * - `backgroundPool`: the hold and expiry sweepers and the health probe. Three connections,
 *   one for each of them (each runs at most one statement or transaction at a time), so none
 *   of them ever waits for a pool connection: a sweeper that waited behind readers would let
 *   holds outlive their TTL, and a health probe that waited would report a healthy database
 *   as unreachable and take the process out of service under read load. Their own pool rather
 *   than the write pool, whose pipelined connections the writer holds across batches.
 * - `pool`: everything else: GetBalance and Quote (short index probes that every client makes
 *   before it spends; kept off the readers' pool so that a journal follower never delays a
 *   balance check, and on the general statement timeout), start-up queries, the metrics
 *   scrape and Prisma.
 */
export interface LedgerPools {
  pool: pg.Pool;
  readPool: pg.Pool;
  writePool: pg.Pool;
  backgroundPool: pg.Pool;
}

export interface LedgerPoolSizes {
  poolSize: number;
  readPoolSize: number;
  timeouts: DbTimeouts;
  readStatementTimeoutMs: number;
}

/** The background pool's size: the hold sweeper, the expiry sweeper and the health probe. */
export const backgroundPoolSize = 3;

/**
 * The readers' timeouts: the general ones with their own statement timeout, and the client's
 * wait for an answer a little longer than it, so that PostgreSQL's cancellation (a clear
 * "statement timeout", answered as DEADLINE_EXCEEDED) arrives before the client gives up on
 * a link that merely went quiet.
 */
export function readTimeouts(timeouts: DbTimeouts, readStatementTimeoutMs: number): DbTimeouts {
  return {
    ...timeouts,
    statementTimeoutMs: readStatementTimeoutMs,
    queryTimeoutMs: Math.max(timeouts.queryTimeoutMs, readStatementTimeoutMs + 5_000),
  };
}

export function createLedgerPools(databaseUrl: string, sizes: LedgerPoolSizes): LedgerPools {
  return {
    pool: createPool(databaseUrl, sizes.poolSize, { timeouts: sizes.timeouts }),
    readPool: createPool(databaseUrl, sizes.readPoolSize, { timeouts: readTimeouts(sizes.timeouts, sizes.readStatementTimeoutMs) }),
    writePool: createPool(databaseUrl, 2, { pipeline: true, timeouts: sizes.timeouts }),
    backgroundPool: createPool(databaseUrl, backgroundPoolSize, { timeouts: sizes.timeouts }),
  };
}

export function allPools(pools: LedgerPools): pg.Pool[] {
  return [pools.pool, pools.readPool, pools.writePool, pools.backgroundPool];
}

/** Closes every pool and waits for their connections to close. */
export async function closeLedgerPools(pools: LedgerPools): Promise<void> {
  await Promise.all(allPools(pools).map((p) => closePool(p)));
}
