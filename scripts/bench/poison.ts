import pg from 'pg';
import { poisonSuffix } from './users.js';

/**
 * consume_poisoned's stand-in for input PostgreSQL rejects (issue 7 item 4). Validation leaves
 * no such input reachable from gRPC, so, as in batch-fallback.e2e.test.ts, a trigger on the
 * bench's own database rejects the entries whose idempotency key ends in the poison suffix:
 * the batch holding one fails and the ledger splits it until that command fails alone.
 */
async function onBenchDb(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, query_timeout: 30_000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export function installPoison(url: string): Promise<void> {
  // Inputs: none. Locks: a brief lock on entries to add the trigger. Output: none.
  return onBenchDb(
    url,
    `CREATE OR REPLACE FUNCTION bench_reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'bench: poisoned entry %', NEW.idempotency_key; END $$;
     DROP TRIGGER IF EXISTS bench_reject_poison ON entries;
     CREATE TRIGGER bench_reject_poison BEFORE INSERT ON entries
       FOR EACH ROW WHEN (right(NEW.idempotency_key, ${poisonSuffix.length}) = '${poisonSuffix}')
       EXECUTE FUNCTION bench_reject_poison();`,
  );
}

export function removePoison(url: string): Promise<void> {
  // Inputs: none. Locks: a brief lock on entries to drop the trigger. Output: none.
  return onBenchDb(url, 'DROP TRIGGER IF EXISTS bench_reject_poison ON entries; DROP FUNCTION IF EXISTS bench_reject_poison();');
}
