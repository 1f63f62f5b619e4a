import type pg from 'pg';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { requestHash } from './domain/canonical.js';
import { LedgerError } from './domain/errors.js';
import type { Command } from './domain/types.js';
import type { WriteQueue } from './write-queue.js';

/** The actor recorded on the entries the ledger writes on its own (timeouts, expiries). */
export const sweeperActor = 'ledger.sweeper';

/** What a sweeper needs: where to look, where to submit, and its period and per-pass bound. */
export interface SweeperDeps {
  pool: pg.Pool;
  queue: WriteQueue;
  clock: Clock;
  log: Logger;
  periodMs: number;
  /** Targets handled per pass at most; a backlog (after downtime) drains pass after pass. */
  batchMax: number;
}

/**
 * Submits the ledger's own commands through the write queue like any caller's, so each is a
 * journaled entry under a key derived from its target: two ledger processes sweeping at once
 * write one entry per target. Returns how many wrote an entry and how many only changed
 * bookkeeping (entry id 0); refusals (the target changed meanwhile) are expected and not errors.
 */
export async function submitAll(queue: WriteQueue, commands: Command[], log: Logger): Promise<{ entries: number; bookkeeping: number }> {
  const results = await Promise.allSettled(
    commands.map((command) =>
      queue.submit({ command, requestHash: requestHash(command), actor: sweeperActor, deadlineMs: Infinity }),
    ),
  );
  const written = { entries: 0, bookkeeping: 0 };
  for (const r of results) {
    if (r.status === 'fulfilled') {
      if (r.value.replayed) continue;
      if (r.value.entryId > 0n) written.entries += 1;
      else written.bookkeeping += 1;
    } else if (!(r.reason instanceof LedgerError && r.reason.code === 'FAILED_PRECONDITION')) {
      log.warn({ err: r.reason }, 'sweeper command failed');
    }
  }
  return written;
}
