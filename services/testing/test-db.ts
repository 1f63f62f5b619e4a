import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { migrate, migrationsDir } from '../lib/migrate.js';

/**
 * Each test file gets its own database, cloned from a template that global setup migrates
 * once. Cloning takes milliseconds and avoids TRUNCATE between files (which leaves the planner
 * with stale statistics: the next load ran about 5x slower until autoanalyze caught up).
 */
export const adminUrl = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/**
 * The template is named after the migrations it holds, so test runs that overlap (or run on
 * the same machine one after another) share it safely, and a changed migration gets a new one.
 */
export const templateName = `ledger_tpl_${migrationsFingerprint()}`;

function migrationsFingerprint(): string {
  const hash = createHash('sha256');
  for (const name of readdirSync(migrationsDir).sort()) {
    const file = path.join(migrationsDir, name, 'migration.sql');
    try {
      hash.update(name).update(readFileSync(file));
    } catch {
      // Not a migration folder (migration_lock.toml).
    }
  }
  return hash.digest('hex').slice(0, 12);
}

export function databaseUrl(name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates the migrated template unless it exists. It is built under another name and renamed
 * when complete, under an advisory lock, so no run ever clones a half-migrated template.
 */
export async function prepareTemplate(): Promise<void> {
  await withAdmin(async (admin) => {
    await admin.query('SELECT pg_advisory_lock(7314000002)');
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [templateName]);
      if (exists.rowCount !== 0) return;
      const building = `${templateName}_building`;
      await admin.query(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`);
      await admin.query(`CREATE DATABASE ${building}`);
      await migrate(databaseUrl(building));
      await admin.query(`ALTER DATABASE ${building} RENAME TO ${templateName}`);
    } finally {
      await admin.query('SELECT pg_advisory_unlock(7314000002)');
    }
  });
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `ledger_t_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin(async (admin) => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${templateName}`);
        return;
      } catch (error) {
        // Another file cloning the template at the same moment makes PostgreSQL refuse with
        // "source database is being accessed by other users"; it passes on a retry.
        if (attempt >= 20 || !/being accessed by other users/.test((error as Error).message)) throw error;
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  });
  return {
    name,
    url: databaseUrl(name),
    drop: () => withAdmin(async (admin) => void (await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))),
  };
}
