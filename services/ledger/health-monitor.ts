import type pg from 'pg';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';

/**
 * What decides whether this ledger process should receive traffic (grpc.health.v1): the
 * database answers, the batch writer is not stuck, and this process's clock agrees with the
 * database's. The write path asks `writeRefusal()` before each batch, so a process whose clock
 * strayed refuses writes (UNAVAILABLE) instead of recording entries at the wrong time.
 */
export interface HealthMonitorOptions {
  pool: pg.Pool;
  clock: Clock;
  log: Logger;
  periodMs: number;
  /** A batch running longer than this means the writer is stuck (its connection stalled). */
  writerStuckMs: number;
  /** Largest tolerated |local clock − database clock|; 0 turns the check off. */
  clockSkewMsMax: number;
  batchAgeMs: () => number;
  setServing: (serving: boolean) => void;
}

export type HealthProblem = 'DATABASE_UNREACHABLE' | 'WRITER_STUCK' | 'CLOCK_SKEW';

export class HealthMonitor {
  readonly #o: HealthMonitorOptions;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #problems = new Map<HealthProblem, string>();
  #skewMs = 0;

  constructor(options: HealthMonitorOptions) {
    this.#o = options;
  }

  /** The last measured local − database clock difference, in ms. */
  get skewMs(): number {
    return this.#skewMs;
  }

  get problems(): ReadonlyMap<HealthProblem, string> {
    return this.#problems;
  }

  /** Why writes must be refused now, or null. Only the clock makes writes unsafe by itself. */
  writeRefusal(): string | null {
    return this.#problems.get('CLOCK_SKEW') ?? null;
  }

  start(): void {
    const tick = () => {
      this.#running = this.checkOnce().finally(() => {
        this.#running = null;
        if (this.#timer !== null) this.#timer = setTimeout(tick, this.#o.periodMs);
      });
    };
    this.#timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One probe: the database's clock (one round trip, bounded), the writer, the skew. */
  async checkOnce(): Promise<void> {
    const found = new Map<HealthProblem, string>();
    const sentMs = this.#o.clock.now().getTime();
    const t0 = performance.now();
    try {
      // Inputs: none. Locks: none. Output: the database's wall clock now.
      const probe = this.#o.pool.query<{ now: Date }>('SELECT clock_timestamp() AS now');
      // A busy machine answers slowly: only a database silent for seconds is unreachable.
      const waitMs = Math.max(this.#o.periodMs * 2, 3_000);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${waitMs} ms`)), waitMs);
      });
      const { rows } = await Promise.race([probe, timeout]).finally(() => clearTimeout(timer));
      const rttMs = performance.now() - t0;
      // The database read its clock about half a round trip after we read ours.
      this.#skewMs = sentMs + rttMs / 2 - rows[0]!.now.getTime();
      if (this.#o.clockSkewMsMax > 0 && Math.abs(this.#skewMs) > this.#o.clockSkewMsMax) {
        found.set(
          'CLOCK_SKEW',
          `this process's clock is ${Math.round(this.#skewMs)} ms off the database's (at most ${this.#o.clockSkewMsMax} ms allowed); writes refused`,
        );
      }
    } catch (error) {
      found.set('DATABASE_UNREACHABLE', `the database did not answer: ${(error as Error).message}`);
    }
    const batchAgeMs = this.#o.batchAgeMs();
    if (batchAgeMs > this.#o.writerStuckMs) {
      found.set('WRITER_STUCK', `the batch in flight has run for ${Math.round(batchAgeMs)} ms (at most ${this.#o.writerStuckMs} ms expected)`);
    }
    this.#apply(found);
  }

  #apply(found: Map<HealthProblem, string>): void {
    for (const [problem, why] of found) {
      if (!this.#problems.has(problem)) this.#o.log.warn({ problem, why }, 'NOT_SERVING');
    }
    for (const problem of this.#problems.keys()) {
      if (!found.has(problem)) this.#o.log.info({ problem }, 'recovered');
    }
    const wasHealthy = this.#problems.size === 0;
    this.#problems = found;
    if (wasHealthy !== (found.size === 0)) this.#o.setServing(found.size === 0);
  }
}
