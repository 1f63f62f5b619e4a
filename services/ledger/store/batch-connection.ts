import type pg from 'pg';

/**
 * The batch writer's connection, held from one batch to the next while the write queue has
 * work. A batch that finds it held sends BEGIN and its reads in the same event-loop turn in
 * which the previous batch committed, so PostgreSQL works on them while this process encodes
 * the previous batch's answers. Taking a connection from the pool instead resolves only after
 * those answers are written (pg-pool hands clients out through process.nextTick), which leaves
 * PostgreSQL idle for that long on every batch.
 *
 * One batch runs at a time, so one connection is all the writer holds.
 */
/** Connections already told to plan with indexes (pg-pool hands the same client objects out again). */
const indexOnly = new WeakSet<pg.PoolClient>();

export class BatchConnection {
  readonly #pool: pg.Pool;
  #held: { client: pg.PoolClient; onError: () => void } | null = null;
  #connecting: Promise<pg.PoolClient> | null = null;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** The held connection, or a promise of one from the pool (then held until release). */
  acquire(): pg.PoolClient | Promise<pg.PoolClient> {
    if (this.#held) return this.#held.client;
    this.#connecting ??= this.#pool.connect().then(async (client) => {
      if (!indexOnly.has(client)) {
        // Every batch statement is a set of index probes by key (users, lots, accounts, entries
        // by primary or unique key; live lots through accounts_live_lots_idx), and is a named
        // prepared statement whose generic plan, once chosen, stays for the connection's life.
        // A plan made while a table was small (a fresh database, before a bulk load) uses
        // sequential scans and hash joins, and nothing replaces it until the table is analyzed:
        // measured, a third of the Consume rate after a 10 000-user load (ledger README,
        // Benchmark, "Plans that do not depend on statistics"). With sequential scans disabled
        // on this session, the planner takes the index whatever the table's size or statistics.
        // Inputs: none. Locks: none.
        try {
          await client.query('SET enable_seqscan = off');
        } catch (error) {
          // A connection that cannot take it is dropped; the batch fails and is retried.
          this.#connecting = null;
          client.release(true);
          throw error;
        }
        indexOnly.add(client);
      }
      this.#connecting = null;
      // A held connection that dies is dropped at once; without a listener pg would raise its
      // 'error' event unhandled, which ends the process. A batch using it fails on its own
      // query and is retried on a new connection.
      const onError = (): void => this.#drop(client, true);
      client.on('error', onError);
      this.#held = { client, onError };
      return client;
    }, (error: unknown) => {
      this.#connecting = null;
      throw error;
    });
    return this.#connecting;
  }

  /** Returns the held connection to the pool, or closes it if it is `broken`. */
  release(broken = false): void {
    if (this.#held) this.#drop(this.#held.client, broken);
  }

  #drop(client: pg.PoolClient, broken: boolean): void {
    if (this.#held?.client !== client) return;
    client.removeListener('error', this.#held.onError);
    this.#held = null;
    client.release(broken);
  }
}

/**
 * Runs `send`, which issues queries without awaiting them, with the connection's socket corked,
 * so that they leave in one write. pg writes every protocol message of a pipelined query on its
 * own (Bind, Execute, Sync…): uncorked, a batch's twenty-odd statements cost some sixty system
 * calls here and as many wake-ups of the PostgreSQL backend, which reads each fragment as it
 * arrives. The uncork is synchronous, never deferred to process.nextTick: that would hold the
 * queries back until the previous batch's answers have been encoded (see WriteQueue).
 */
export function sendTogether<T>(client: pg.PoolClient, send: () => T): T {
  // PoolClient is a pg Client; its socket is typed on Client only.
  const socket = (client as unknown as pg.Client).connection.stream;
  socket.cork();
  try {
    return send();
  } finally {
    socket.uncork();
  }
}
