// The payments service's composition root: parse the configuration once, build the
// dependencies, serve HTTP, apply the webhook inbox, and drain on SIGTERM/SIGINT.
import { startTracing } from '../lib/tracing.js';
import { pathToFileURL } from 'node:url';
import Stripe from 'stripe';
import { createLedgerClient, ledgerClientTlsFromEnv, type LedgerClient } from '../ledger/client/index.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { closePool, createPool } from '../lib/db.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { exitOnSignal, poolErrorLogger } from '../lib/signals.js';
import { loadCatalog, type Catalog } from './catalog/catalog.js';
import { CheckoutSessions } from './checkout.js';
import { parsePaymentsConfig, type PaymentsConfig } from './config.js';
import { buildApp } from './http/app.js';
import { UserAuth } from './http/user-auth.js';
import { InboxApplier } from './inbox/inbox-applier.js';
import { InboxStore } from './inbox/inbox-store.js';
import { InboxWriter } from './inbox/inbox-writer.js';
import { PaymentsMetrics } from './metrics.js';

export interface RunningPayments {
  port: number;
  url: string;
  config: PaymentsConfig;
  catalog: Catalog;
  applier: InboxApplier;
  store: InboxStore;
  metrics: PaymentsMetrics;
  /** Stops taking requests, finishes the apply pass in flight, closes the ledger client and pool. */
  stop(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  /** Start the inbox applier (tests that drive passes themselves pass false). */
  applier?: boolean;
}

/** A Stripe client for the configured API (Stripe's, or a local stand-in at STRIPE_API_URL). */
export function createStripe(secretKey: string, apiUrl: string | undefined): Stripe {
  const base = apiUrl ? new URL(apiUrl) : null;
  return new Stripe(secretKey, {
    maxNetworkRetries: 1,
    timeout: 10_000,
    ...(base
      ? {
          host: base.hostname,
          port: base.port || (base.protocol === 'https:' ? 443 : 80),
          protocol: base.protocol === 'http:' ? 'http' : 'https',
        }
      : {}),
  });
}

export async function startPayments(
  env: Record<string, string | undefined>,
  log: Logger = createLogger('payments'),
  options: StartOptions = {},
): Promise<RunningPayments> {
  const config = parsePaymentsConfig(env);
  const tracing = startTracing('payments', env);
  const clock = options.clock ?? systemClock;
  const catalog = loadCatalog(config.catalogFile, config.saleTimeZone, config.lootboxSeedSecret);
  const pool = createPool(config.databaseUrl, config.dbPoolSize);
  pool.on('error', poolErrorLogger(log));
  const store = new InboxStore(pool);
  const metrics = new PaymentsMetrics(() => store.stats(clock.now()));
  // TLS to the ledger when LEDGER_TLS_CA (and, for mTLS, LEDGER_TLS_CLIENT_CERT/_KEY) are set.
  const ledgerClient: LedgerClient = createLedgerClient(config.ledgerAddr, config.ledgerToken, {}, ledgerClientTlsFromEnv(env));
  const ledger = metrics.instrument(ledgerClient, ['purchase', 'renewSubscription', 'refund', 'reinstateDispute', 'getBalance', 'listEntries']);
  const stripe = createStripe(config.stripeSecretKey, config.stripeApiUrl);
  const applier = new InboxApplier(store, { ledger, catalog, ledgerTimeoutMs: config.ledgerTimeoutMs }, config.apply, clock, metrics, log.child({ component: 'inbox' }));
  let baseUrl = config.publicBaseUrl;
  const checkout = new CheckoutSessions(stripe, catalog.currency, (path) => `${baseUrl}${path}`);
  const app = await buildApp({
    log,
    clock,
    pool,
    ledger,
    ledgerTimeoutMs: config.ledgerTimeoutMs,
    stripe,
    webhookSecret: config.stripeWebhookSecret,
    catalog,
    checkout,
    auth: new UserAuth(config.authJwtSecret, config.authJwksUrl, clock),
    writer: new InboxWriter(store, clock),
    metrics,
    onStored: () => applier.wake(),
    ...(config.devSignIn ? { devSignIn: { secret: config.authJwtSecret } } : {}),
  });
  const [host, portText] = splitHostPort(config.httpAddr);
  await app.listen({ host, port: Number(portText) });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : Number(portText);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  baseUrl ??= url;
  if (options.applier ?? true) applier.start();
  // One line that supervisors and tests wait for, whatever LOG_LEVEL says.
  log.child({}, { level: 'info' }).info({ port, url }, 'ready');

  let stopping: Promise<void> | null = null;
  return {
    port,
    url,
    config,
    catalog,
    applier,
    store,
    metrics,
    stop() {
      stopping ??= (async () => {
        const grace = setTimeout(() => app.server.closeAllConnections(), config.drainGraceMs);
        await app.close();
        clearTimeout(grace);
        await applier.stop();
        ledgerClient.close();
        await closePool(pool);
        await tracing.shutdown();
      })();
      return stopping;
    },
  };
}

function splitHostPort(addr: string): [string, string] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i).replace(/^\[|\]$/g, ''), addr.slice(i + 1)];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const log = createLogger('payments');
  startPayments(process.env, log).then(
    (running) => exitOnSignal(log, running.stop),
    (error: unknown) => {
      log.fatal({ err: error }, 'payments failed to start');
      process.exit(1);
    },
  );
}
