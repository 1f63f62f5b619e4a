// The ledger's composition root: parse the configuration once, build the dependencies, serve,
// and drain on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { systemClock } from '../lib/clock.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { startMetricsServer } from '../lib/metrics-server.js';
import { exitOnSignal, poolErrorLogger } from '../lib/signals.js';
import { startTracing } from '../lib/tracing.js';
import { parseLedgerConfig } from './config.js';
import { Ledger } from './ledger.js';
import { allPools, closeLedgerPools, createLedgerPools } from './pools.js';
import { roleWarning } from './store/db-roles.js';

export interface RunningLedger {
  ledger: Ledger;
  port: number;
  /** The Prometheus endpoint's port, null when LEDGER_METRICS_ADDR is empty. */
  metricsPort: number | null;
  /** Drains the server and the write queue, then closes the database pools. */
  stop(): Promise<void>;
  /** How long stop() may take in all: the drain grace plus a second to close. */
  stopDeadlineMs: number;
}

export async function startLedger(
  env: Record<string, string | undefined>,
  log: Logger = createLogger('ledger'),
): Promise<RunningLedger> {
  const config = parseLedgerConfig(env);
  const tracing = startTracing('ledger', env);
  const pools = createLedgerPools(config.databaseUrl, {
    poolSize: config.dbPoolSize,
    readPoolSize: config.dbReadPoolSize,
    timeouts: config.dbTimeouts,
    readStatementTimeoutMs: config.dbReadStatementTimeoutMs,
  });
  // An idle connection dropped by the server (restart, failover) is replaced on next use; log
  // only what identifies the cause, not the client object pg attaches to the error.
  for (const p of allPools(pools)) {
    p.on('error', poolErrorLogger(log));
  }
  const roleProblem = await roleWarning(pools.pool);
  if (roleProblem) log.warn({ problem: roleProblem }, 'database role');
  const tls = config.tlsFiles
    ? {
        certPem: readFileSync(config.tlsFiles.cert),
        keyPem: readFileSync(config.tlsFiles.key),
        clientCaPem: config.tlsFiles.clientCa ? readFileSync(config.tlsFiles.clientCa) : null,
      }
    : null;
  const ledger = await Ledger.create({ ...pools, clock: systemClock, log, options: { ...config, tls } });
  const port = await ledger.start();
  const metrics = config.metricsAddr ? await startMetricsServer(config.metricsAddr, ledger.metrics.registry, log, () => ledger.serving) : null;
  // One line that supervisors and tests wait for, whatever LOG_LEVEL says.
  log.child({}, { level: 'info' }).info({ port, metricsPort: metrics?.port ?? null }, 'ready');
  return {
    ledger,
    port,
    metricsPort: metrics?.port ?? null,
    stopDeadlineMs: config.drainGraceMs + 1_000,
    async stop() {
      await ledger.stop();
      await metrics?.close();
      await closeLedgerPools(pools);
      await tracing.shutdown();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const log = createLogger('ledger');
  startLedger(process.env, log).then(
    (running) => exitOnSignal(log, running.stop, running.stopDeadlineMs),
    (error: unknown) => {
      log.fatal({ err: error }, 'ledger failed to start');
      process.exit(1);
    },
  );
}
