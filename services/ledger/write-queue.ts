import { LedgerError } from './domain/errors.js';
import type { WriteResult } from './domain/types.js';
import type { BatchItem, Outcome } from './execute-batch.js';

export interface WriteQueueOptions {
  execute: (items: BatchItem[]) => Promise<Outcome[]>;
  /** Commands per batch (one transaction). */
  batchSizeMax: number;
  /** Commands waiting; beyond it callers get RESOURCE_EXHAUSTED at once. */
  queueLengthMax: number;
  /** Called when the queue runs out of work (the writer then returns its connection). */
  onIdle?: () => void;
  /** Called after each batch with its size and how long it took to commit (metrics). */
  onBatch?: (size: number, seconds: number) => void;
}

interface Waiting {
  item: BatchItem;
  resolve: (result: WriteResult) => void;
  reject: (error: Error) => void;
}

/**
 * Group commit: commands wait here while the previous batch commits, and the next batch takes
 * all that arrived, up to batchSizeMax. No timer delays a lone command: under light load a batch
 * is one command, under heavy load batches fill up by themselves. One batch runs at a time per
 * process; processes serialise on the journal head.
 */
export class WriteQueue {
  readonly #options: WriteQueueOptions;
  #waiting: Waiting[] = [];
  #running = false;
  #closed = false;
  #idle: (() => void)[] = [];
  /** performance.now() when the batch in flight started; null while none runs. */
  #batchStartedMs: number | null = null;

  constructor(options: WriteQueueOptions) {
    this.#options = options;
  }

  get length(): number {
    return this.#waiting.length;
  }

  /** How long the batch in flight has been running (0 when none runs): a stuck writer shows here. */
  batchAgeMs(nowMs = performance.now()): number {
    return this.#batchStartedMs === null ? 0 : nowMs - this.#batchStartedMs;
  }

  submit(item: BatchItem): Promise<WriteResult> {
    if (this.#closed) {
      return Promise.reject(new LedgerError('UNAVAILABLE', 'the ledger is shutting down; retry on another instance'));
    }
    if (this.#waiting.length >= this.#options.queueLengthMax) {
      return Promise.reject(
        new LedgerError('RESOURCE_EXHAUSTED', `the write queue is full (${this.#options.queueLengthMax} commands); retry with backoff`),
      );
    }
    return new Promise<WriteResult>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        // Let the other requests of this event-loop turn join the first batch.
        setImmediate(() => void this.#drain());
      }
    });
  }

  /** Stops accepting commands and resolves once every accepted one has been answered. */
  async close(): Promise<void> {
    this.#closed = true;
    if (!this.#running && this.#waiting.length === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /**
   * Runs batches until nothing waits. Each batch starts before the previous one is answered:
   * answering runs every caller's continuation (encoding and writing its gRPC response), and
   * starting first lets the next batch's statements reach PostgreSQL before that work, instead
   * of after it. Still only one batch runs at a time.
   */
  async #drain(): Promise<void> {
    let batch = this.#take();
    let running = this.#execute(batch);
    while (batch.length > 0) {
      const outcomes = await running;
      const next = this.#take();
      running = this.#execute(next);
      answer(batch, outcomes);
      batch = next;
    }
    this.#running = false;
    this.#batchStartedMs = null;
    this.#options.onIdle?.();
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #take(): Waiting[] {
    return this.#waiting.splice(0, this.#options.batchSizeMax);
  }

  /** Starts a batch (synchronously, up to its first await); never rejects. */
  #execute(batch: Waiting[]): Promise<Outcome[]> {
    if (batch.length === 0) {
      this.#batchStartedMs = null;
      return Promise.resolve([]);
    }
    const startedMs = performance.now();
    this.#batchStartedMs = startedMs;
    const report = (outcomes: Outcome[]) => {
      this.#options.onBatch?.(batch.length, (performance.now() - startedMs) / 1000);
      return outcomes;
    };
    const failAll = (error: unknown): Outcome[] => batch.map(() => ({ ok: false as const, error: error as Error }));
    try {
      return this.#options.execute(batch.map((w) => w.item)).catch(failAll).then(report);
    } catch (error) {
      // An executor that throws instead of rejecting must not leave the queue running forever.
      return Promise.resolve(failAll(error));
    }
  }
}

function answer(batch: Waiting[], outcomes: Outcome[]): void {
  batch.forEach((w, i) => {
    const outcome = outcomes[i];
    if (outcome?.ok) w.resolve(outcome.result);
    else w.reject(outcome?.error ?? new Error('batch returned no outcome'));
  });
}
