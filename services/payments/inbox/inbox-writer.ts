import type { Clock } from '../../lib/clock.js';
import type { IncomingEvent, InboxStore } from './inbox-store.js';

interface Pending {
  event: IncomingEvent;
  status: 'PENDING' | 'IGNORED';
  resolve: (stored: boolean) => void;
  reject: (error: unknown) => void;
}

/**
 * Group insert for the webhook route: deliveries that arrive while an insert is in flight wait
 * for the next one and go together in one statement (one commit), up to `batchMax`. A single
 * delivery on an idle service is inserted at once. Each caller learns whether its event was
 * stored now (true) or was stored before (false); of two deliveries of one event in a batch,
 * only the first counts as stored.
 */
export class InboxWriter {
  readonly #queue: Pending[] = [];
  #flushing = false;

  constructor(
    private readonly inbox: InboxStore,
    private readonly clock: Clock,
    private readonly batchMax = 200,
  ) {}

  store(event: IncomingEvent, status: 'PENDING' | 'IGNORED'): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ event, status, resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  #settle(batch: readonly Pending[], inserted: ReadonlySet<string>): void {
    const claimed = new Set<string>();
    for (const item of batch) {
      const id = item.event.eventId;
      item.resolve(inserted.has(id) && !claimed.has(id));
      claimed.add(id);
    }
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.batchMax);
      try {
        this.#settle(batch, await this.inbox.storeMany(batch, this.clock.now()));
      } catch (error) {
        if (batch.length === 1) {
          batch[0]!.reject(error);
          continue;
        }
        // One event the database refuses must not fail the others of its batch: one by one.
        for (const item of batch) {
          try {
            this.#settle([item], await this.inbox.storeMany([item], this.clock.now()));
          } catch (itemError) {
            item.reject(itemError);
          }
        }
      }
    }
    this.#flushing = false;
  }
}
