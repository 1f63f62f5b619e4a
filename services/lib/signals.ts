import type { Logger } from './logger.js';

let stopSignal: string | null = null;

/**
 * Logs a pool's idle-connection error: a warning, unless the process is stopping anyway (a
 * Ctrl-C in a terminal reaches the whole process group, so a database this process started may
 * shut down at the same moment: losing connections then is expected).
 */
export function poolErrorLogger(log: Logger): (error: Error & { code?: string }) => void {
  return (error) => {
    const fields = { code: error.code, error: error.message };
    if (stopSignal) log.info(fields, 'database connection closed while stopping');
    else log.warn(fields, 'idle database connection failed');
  };
}

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
    stopSignal = signal;
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
