import { LedgerError } from '../domain/errors.js';

/**
 * A per-process cap on StreamJournal calls open at once. Each open stream polls the journal
 * and holds memory for the messages in flight to its client; without a cap, followers could
 * grow until their polling crowds the readers' pool and the process's memory. A call beyond
 * the cap is refused at once (RESOURCE_EXHAUSTED, naming the limit) rather than queued: a
 * stream never ends by itself, so a queued call could wait forever.
 */
export class StreamSlots {
  #open = 0;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`streamsMax must be a positive integer, got ${max}`);
  }

  /** Streams open now. */
  get open(): number {
    return this.#open;
  }

  /**
   * Runs `stream` in a slot, which is freed when it settles (the stream ended, failed, or was
   * cancelled by its client or by the server's drain). Throws RESOURCE_EXHAUSTED when all
   * slots are taken.
   */
  async run(stream: () => Promise<void>): Promise<void> {
    if (this.#open >= this.max) {
      throw new LedgerError(
        'RESOURCE_EXHAUSTED',
        `this ledger process already serves ${this.max} StreamJournal calls (LEDGER_STREAMS_MAX); retry later or on another replica`,
      );
    }
    this.#open += 1;
    try {
      await stream();
    } finally {
      this.#open -= 1;
    }
  }
}
