import { setMaxListeners } from 'node:events';
import { status, type ServiceError } from '@grpc/grpc-js';
import pg from 'pg';
import { createLedgerClient } from '../../services/ledger/client/index.js';
import { progress, within } from './waits.js';

/**
 * The slow StreamJournal readers of consume_with_readers (issue 7 item 12): journal followers
 * that read slowly while the client processes drive a Consume storm. They start at the
 * journal's head, as followers do, each on its own channel (separate auditing or export
 * processes); half of them take their first entry and then stop reading (the ledger's writes
 * to them wait, the stream stays open), the other half take one entry every `pauseMs`. They
 * run in the bench's parent process, which the CPU columns do not count; at these rates they
 * cost it little.
 */
export interface SlowReaders {
  count: number;
  paused: number;
  pauseMs: number;
  /** Cancels every stream and reports what they read and how they ended. */
  close(): Promise<SlowReadersReport>;
}

export interface SlowReadersReport {
  entriesRead: number;
  /** Streams that ended with an error before the bench cancelled them, by status name. */
  errors: Record<string, number>;
  firstError: string | null;
}

/** The journal head's seq now, so that the readers start where followers would. */
async function headSeq(databaseUrl: string): Promise<bigint> {
  const client = new pg.Client({ connectionString: databaseUrl, query_timeout: 10_000 });
  await client.connect();
  try {
    // Inputs: none. Locks: none. Output: the last entry's seq (0 on an empty journal).
    const { rows } = await client.query<{ seq: string }>('SELECT seq::text FROM journal_head WHERE id = 1');
    return BigInt(rows[0]?.seq ?? '0');
  } finally {
    await client.end();
  }
}

export async function openSlowReaders(address: string, token: string, databaseUrl: string, count: number, pauseMs: number): Promise<SlowReaders> {
  const from = (await headSeq(databaseUrl)) + 1n;
  const abort = new AbortController();
  // One signal ends every reader: each stream listens to it, and so does the shared wait.
  setMaxListeners(count + 10, abort.signal);
  const aborted = new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve()));
  let entriesRead = 0;
  const errors: Record<string, number> = {};
  let firstError: string | null = null;
  const starts: Promise<void>[] = [];
  const runs = Array.from({ length: count }, (_, i) => {
    const paused = i % 2 === 0;
    const client = createLedgerClient(address, token, { 'grpc.use_local_subchannel_pool': 1 });
    let started!: () => void;
    starts.push(new Promise<void>((resolve) => (started = resolve)));
    return (async () => {
      try {
        for await (const _entry of client.streamJournal(from, abort.signal)) {
          entriesRead += 1;
          started();
          if (paused) await aborted;
          else await Promise.race([aborted, new Promise((resolve) => setTimeout(resolve, pauseMs))]);
          if (abort.signal.aborted) break;
        }
      } catch (error) {
        const e = error as ServiceError;
        const name = status[e.code] ?? 'unknown';
        errors[name] = (errors[name] ?? 0) + 1;
        firstError ??= `${name}: ${e.details ?? e.message}`;
      } finally {
        started();
        client.close();
      }
    })();
  });
  // Open means the ledger's handler runs and has sent an entry: its slot is taken. The
  // journal grows from the warm-up's first Consume on, so the first entry comes with it.
  const opened = Promise.all(starts);
  return {
    count,
    paused: Math.ceil(count / 2),
    pauseMs,
    async close() {
      await within(opened, 30_000, 'the slow readers to receive their first entry').catch((error: unknown) =>
        progress(`slow readers: ${(error as Error).message}`),
      );
      abort.abort();
      await within(Promise.all(runs), 15_000, 'the slow readers to end');
      return { entriesRead, errors, firstError };
    },
  };
}
