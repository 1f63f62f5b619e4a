import { startChild, type Child } from '../../testing/child-process.js';
import { redisUrl } from './worker-harness.js';

/** The worker's main.ts as a real child process (for kill -9 and SIGTERM tests). */
export async function startWorkerChild(o: {
  prefix: string;
  ledgerAddress: string;
  ledgerToken: string;
  simulatorUrl: string;
  apiKey: string;
  env?: Record<string, string>;
}): Promise<Child> {
  return startChild('services/worker/main.ts', {
    REDIS_URL: redisUrl,
    LEDGER_ADDR: o.ledgerAddress,
    LEDGER_TOKEN: o.ledgerToken,
    WAVESPEED_API_KEY: o.apiKey,
    WAVESPEED_BASE_URL: o.simulatorUrl,
    WORKER_QUEUE_PREFIX: o.prefix,
    WORKER_METRICS_ADDR: '127.0.0.1:0',
    WORKER_CONCURRENCY: '20',
    WORKER_LOCK_MS: '2000',
    WORKER_STALLED_INTERVAL_MS: '1000',
    WORKER_HOLD_TTL_MS: '30000',
    WAVESPEED_POLL_INITIAL_MS: '200',
    WAVESPEED_POLL_INTERVAL_MS: '150',
    WAVESPEED_POLL_MAX_MS: '1000',
    WAVESPEED_SUBMIT_TIMEOUT_MS: '2000',
    ...o.env,
  });
}
