// The enhancement worker's composition root: parse the configuration once, connect Redis and
// the ledger, serve /metrics, consume the `enhancements` queue, drain on SIGTERM/SIGINT.
import { startTracing } from '../lib/tracing.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { createLedgerClient, ledgerClientTlsFromEnv } from '../ledger/client/index.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { exitOnSignal } from '../lib/signals.js';
import { parseWorkerConfig } from './config.js';
import { createEnhancementWorker } from './enhancement-worker.js';
import { LedgerGateway } from './ledger-gateway.js';
import { createWorkerMetrics } from './metrics.js';
import { loadModelTable } from './models.js';
import { PredictionClaims } from './prediction-claims.js';
import { SubmitRateLimiter } from './submit-rate-limiter.js';
import { WavespeedClient } from './wavespeed-client.js';
import { WebhookInbox, webhookPath } from './webhook-inbox.js';

export interface RunningWorker {
  metricsPort: number;
  stop(): Promise<void>;
}

export async function startWorker(env: Record<string, string | undefined>, log: Logger = createLogger('worker')): Promise<RunningWorker> {
  const config = parseWorkerConfig(env);
  const tracing = startTracing('worker', env);
  const models = loadModelTable(config.modelsFile);
  const metrics = createWorkerMetrics();
  const bullConnection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const redis = new Redis(config.redisUrl);
  for (const c of [bullConnection, redis]) c.on('error', (error) => log.warn({ err: error.message }, 'redis connection error'));
  // TLS to the ledger when LEDGER_TLS_CA (and, for mTLS, LEDGER_TLS_CLIENT_CERT/_KEY) are set.
  const ledgerClient = createLedgerClient(config.ledgerAddr, config.ledgerToken, {}, ledgerClientTlsFromEnv(env));
  const wavespeed = new WavespeedClient(config.wavespeed);
  // The signing secret comes from Wavespeed itself, with the API key: one secret less to configure.
  const webhooks = config.webhookUrl
    ? new WebhookInbox(redis, config.queuePrefix, config.webhookUrl, await wavespeed.webhookSecret())
    : null;
  const enhancement = createEnhancementWorker({
    connection: bullConnection,
    prefix: config.queuePrefix,
    concurrency: config.concurrency,
    ratePerMin: config.ratePerMin,
    lockMs: config.lockMs,
    stalledIntervalMs: config.stalledIntervalMs,
    log,
    deps: {
      ledger: new LedgerGateway(ledgerClient, metrics, config.flow.ledgerRetryMs),
      wavespeed,
      models,
      claims: new PredictionClaims(redis, config.queuePrefix),
      metrics,
      log,
      timings: config.flow,
      submitLimiter: config.ratePerMin === null ? null : new SubmitRateLimiter(redis, config.queuePrefix, config.ratePerMin),
      webhooks,
    },
  });

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (error: unknown) => res.writeHead(500).end(String(error)),
      );
      return;
    }
    if (webhooks && req.method === 'POST' && req.url?.split('?')[0] === webhookPath) {
      webhooks.handle(req, res).catch((error: unknown) => {
        log.error({ err: error }, 'webhook handling failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(enhancement.worker.isRunning() ? 200 : 503).end();
      return;
    }
    res.writeHead(404).end();
  });
  const separator = config.metricsAddr.lastIndexOf(':');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(config.metricsAddr.slice(separator + 1)), config.metricsAddr.slice(0, separator).replace(/^\[|\]$/g, ''), () => resolve());
  });
  await enhancement.worker.waitUntilReady();
  const metricsPort = (server.address() as AddressInfo).port;
  // One line that supervisors and tests wait for, whatever LOG_LEVEL says.
  log.child({}, { level: 'info' }).info({ metricsPort, concurrency: config.concurrency, models: models.ids }, 'ready');
  return {
    metricsPort,
    async stop() {
      await enhancement.close(config.drainGraceMs);
      ledgerClient.close();
      wavespeed.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([bullConnection.quit(), redis.quit()]);
      await tracing.shutdown();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const log = createLogger('worker');
  startWorker(process.env, log).then(
    (running) => exitOnSignal(log, running.stop),
    (error: unknown) => {
      log.fatal({ err: error }, 'worker failed to start');
      process.exit(1);
    },
  );
}
