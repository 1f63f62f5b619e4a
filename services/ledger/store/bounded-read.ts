import type pg from 'pg';
import { LedgerError } from '../domain/errors.js';
import { isStatementTimeout } from './pg-errors.js';

/**
 * Runs a read on the readers' pool and answers a statement that PostgreSQL cancelled at that
 * pool's statement timeout as DEADLINE_EXCEEDED, naming the timeout.
 *
 * DEADLINE_EXCEEDED rather than UNAVAILABLE: the database is up and answered; the read did not
 * finish within the time the ledger allows a read, which is what DEADLINE_EXCEEDED says.
 * UNAVAILABLE means "retry as is", and clients and gRPC retry policies do so at once, but the
 * same scan would run into the same timeout again and multiply the load the timeout is there
 * to shed; the caller should narrow the read (filters, a smaller page) instead.
 */
export async function boundedRead<T>(readPool: pg.Pool, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (!isStatementTimeout(error)) throw error;
    const timeoutMs = Number((readPool.options as { statement_timeout?: unknown }).statement_timeout);
    throw new LedgerError(
      'DEADLINE_EXCEEDED',
      `the read ran past the ledger's read statement timeout (${Number.isFinite(timeoutMs) ? `${timeoutMs} ms, ` : ''}LEDGER_DB_READ_STATEMENT_TIMEOUT_MS); narrow it (filters, a smaller page) rather than retry it as is`,
    );
  }
}
