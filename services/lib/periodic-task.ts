import type { Logger } from './logger.js';

/**
 * Runs `pass` every `periodMs` (never two at once), and again at once while a pass reports a
 * full batch, so a backlog after downtime drains without waiting a period per batch.
 */
export class PeriodicTask {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<unknown> | null = null;

  constructor(
    private readonly name: string,
    private readonly periodMs: number,
    private readonly pass: () => Promise<{ full: boolean }>,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = () => {
      this.#running = this.pass()
        .catch((error: unknown) => {
          this.log.warn({ err: error, task: this.name }, 'periodic task failed; will retry next period');
          return { full: false };
        })
        .then(({ full }) => {
          this.#running = null;
          if (this.#timer !== null) this.#timer = setTimeout(tick, full ? 0 : this.periodMs);
        });
    };
    this.#timer = setTimeout(tick, this.periodMs);
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
