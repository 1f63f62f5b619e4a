import pg from 'pg';
import { migrate } from '../../services/lib/migrate.js';

/**
 * The bench's databases: created fresh from the admin URL, migrated with the project's own
 * runner, dropped at the end. A fresh database per run keeps the planner statistics and the
 * table sizes the same from run to run (a TRUNCATE followed by VACUUM ANALYZE leaves stale
 * statistics that made the next load about 5x slower here).
 */

export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function withAdmin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000, query_timeout: 30_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drops `name` if a previous run left it, creates it and applies every migration. */
export async function createMigratedDatabase(adminUrl: string, name: string): Promise<string> {
  await withAdmin(adminUrl, async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  });
  const url = databaseUrl(adminUrl, name);
  await migrate(url);
  return url;
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  // FORCE: a killed ledger's connections may linger for a moment after its process is gone.
  await withAdmin(adminUrl, async (admin) => void (await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
}

export interface ServerFacts {
  version: string;
  synchronousCommit: string;
  fsync: string;
}

export async function serverFacts(adminUrl: string): Promise<ServerFacts> {
  return withAdmin(adminUrl, async (admin) => {
    const { rows } = await admin.query<{ version: string; sc: string; fsync: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sc,
              current_setting('fsync') AS fsync`,
    );
    const row = rows[0];
    if (!row) throw new Error('PostgreSQL returned no settings');
    return { version: row.version, synchronousCommit: row.sc, fsync: row.fsync };
  });
}

/**
 * PostgreSQL processes whose CPU a scenario is charged with: the backends connected to the
 * bench database plus the server's background processes (WAL writer, checkpointer, …), which
 * work for every database, this one included. With no database, only the latter.
 */
export async function postgresPids(admin: pg.Client, databaseName: string | null): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE (datname = $1 AND pid <> pg_backend_pid()) OR backend_type IN
            ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher')`,
    [databaseName],
  );
  return rows.map((r) => r.pid);
}

/**
 * Fresh tables have no statistics until autovacuum gets to them, and the seeding's inserts
 * would soon wake autovacuum in the middle of a measurement: vacuum and analyse once, on
 * purpose, before the scenarios.
 */
export async function vacuumAnalyze(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, query_timeout: 120_000 });
  await client.connect();
  try {
    await client.query('VACUUM ANALYZE');
  } finally {
    await client.end();
  }
}
