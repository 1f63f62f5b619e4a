import type { Logger } from './logger.js';

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits 0 (1 if stopping failed). With `deadlineMs`,
 * a stop that has not finished by then (a database that stopped answering) exits 1 anyway, so a
 * supervisor's grace period is always enough.
 */
export function exitOnSignal(log: Logger, stop: () => Promise<void>, deadlineMs?: number): void {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    if (deadlineMs !== undefined) {
      setTimeout(() => {
        log.error({ deadlineMs }, 'drain did not finish in time; exiting');
        process.exit(1);
      }, deadlineMs).unref();
    }
    stop()
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((error: unknown) => {
        log.error({ err: error }, 'drain failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
