// The ledger's composition root: parse the configuration once, build the dependencies, serve,
// and drain on SIGTERM/SIGINT.
import { pathToFileURL } from 'node:url';
import { systemClock } from '../lib/clock.js';
import { createPool } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { parseLedgerConfig } from './config.js';
import { Ledger } from './ledger.js';

const log = createLogger('ledger');

export async function main(env: Record<string, string | undefined> = process.env): Promise<Ledger> {
  const config = parseLedgerConfig(env);
  const pool = createPool(config.databaseUrl, config.dbPoolSize);
  pool.on('error', (error) => log.warn({ err: error }, 'idle database connection failed'));
  const ledger = await Ledger.create({ pool, clock: systemClock, log, options: config });
  const port = await ledger.start();
  // One line that supervisors and tests can wait for.
  log.info({ port }, 'ready');

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    ledger
      .stop()
      .then(() => pool.end())
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
  return ledger;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    log.fatal({ err: error }, 'ledger failed to start');
    process.exit(1);
  });
}
