import pg from 'pg';

/**
 * The ledger's tables whose statistics a bulk load makes stale. Autovacuum would analyze them
 * eventually (and is off on some machines); the plans of the hot statements no longer depend on
 * fresh statistics (ledger README, Benchmark, "Plans that do not depend on statistics"), but
 * every other query does, so the import refreshes them at its end.
 */
export const analyzedTables = ['users', 'accounts', 'lots', 'entries', 'transfers', 'holds', 'journal_head'] as const;

/**
 * ANALYZE of the ledger's tables on `databaseUrl`. It must connect as their owner (the role the
 * migrations run as) or a superuser: PostgreSQL lets nobody else analyze a table.
 */
export async function analyzeTables(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000, query_timeout: 600_000 });
  await client.connect();
  try {
    // Inputs: none. Locks: SHARE UPDATE EXCLUSIVE on each table (writes go on). Output: none.
    await client.query(`ANALYZE ${analyzedTables.join(', ')}`);
  } finally {
    await client.end();
  }
}
