import pg from 'pg';

/**
 * The ledger's database roles (ledger README §4 "Lock the journal down"):
 *
 * - an **owner** role owns every ledger table and runs the migrations; only it may alter the
 *   tables or disable their triggers;
 * - an **app** role is what the ledger process connects as: it may INSERT and SELECT the journal
 *   (entries, transfers) and nothing more there, read and write the current-state tables the
 *   batch maintains (users, accounts, lots, holds, journal_head), use their id sequences, and
 *   read the legacy `user_credits` view. It cannot UPDATE, DELETE or TRUNCATE the journal (no
 *   grant, and the append-only triggers besides), cannot disable triggers (not the owner), and
 *   cannot set session_replication_role (not a superuser).
 *
 * `applyRoles` is idempotent: it creates missing roles and (re)applies ownership and grants.
 * It must run as a superuser (or a role that may create roles and owns the tables).
 */
export interface RolesOptions {
  owner: string;
  app: string;
  ownerPassword?: string;
  appPassword?: string;
}

const roleName = /^[a-z_][a-z0-9_]{0,62}$/;

/** Journal tables: append and read only. */
const journalTables = ['entries', 'transfers'];
/** Current-state tables the batch writer and the sweepers maintain. */
const stateTables = ['users', 'accounts', 'lots', 'holds', 'journal_head'];

export async function applyRoles(adminUrl: string, options: RolesOptions): Promise<void> {
  for (const [what, name] of [['owner', options.owner], ['app', options.app]] as const) {
    if (!roleName.test(name)) throw new Error(`${what} role "${name}": lower-case letters, digits and _ only`);
  }
  if (options.owner === options.app) throw new Error('the owner and app roles must differ');
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  const id = (name: string) => client.escapeIdentifier(name);
  const literal = (value: string) => client.escapeLiteral(value);
  try {
    const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
    const database = rows[0]!.db;
    await client.query('BEGIN');
    for (const [name, password] of [
      [options.owner, options.ownerPassword],
      [options.app, options.appPassword],
    ] as const) {
      // Inputs: a validated role name. Locks: none beyond the catalog's. Output: the role exists.
      const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
      if (exists.rowCount === 0) await client.query(`CREATE ROLE ${id(name)} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB`);
      if (password !== undefined) await client.query(`ALTER ROLE ${id(name)} PASSWORD ${literal(password)}`);
    }
    const owner = id(options.owner);
    const app = id(options.app);
    // The owner runs migrations: it creates schemas (the payments inbox) and tables.
    await client.query(`GRANT CONNECT, CREATE ON DATABASE ${id(database)} TO ${owner}`);
    await client.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${owner}`);
    for (const table of [...journalTables, ...stateTables, '_prisma_migrations']) {
      await client.query(`ALTER TABLE ${id(table)} OWNER TO ${owner}`);
    }
    await client.query(`ALTER VIEW user_credits OWNER TO ${owner}`);
    await client.query(`ALTER FUNCTION ledger_reject_mutation() OWNER TO ${owner}`);
    await client.query(`GRANT CONNECT ON DATABASE ${id(database)} TO ${app}`);
    await client.query(`GRANT USAGE ON SCHEMA public TO ${app}`);
    await client.query(`REVOKE ALL ON ${[...journalTables, ...stateTables, '_prisma_migrations'].map(id).join(', ')} FROM ${app}`);
    await client.query(`GRANT SELECT, INSERT ON ${journalTables.map(id).join(', ')} TO ${app}`);
    await client.query(`GRANT SELECT, INSERT, UPDATE ON ${stateTables.map(id).join(', ')} TO ${app}`);
    await client.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${app}`);
    await client.query(`GRANT SELECT ON user_credits TO ${app}`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

/** Why the ledger should not run as the role it connected as, or null when it is fine. */
export async function roleWarning(pool: pg.Pool): Promise<string | null> {
  // Inputs: none. Locks: none. Output: whether the session's role is a superuser or owns the journal.
  const { rows } = await pool.query<{ role: string; superuser: boolean; owner: boolean }>(
    `SELECT current_user AS role, r.rolsuper AS superuser,
            EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = 'entries'
                      AND tableowner = current_user) AS owner
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const r = rows[0];
  if (!r) return null;
  if (r.superuser) return `connected as ${r.role}, a superuser: it can disable the journal's triggers; run the ledger as its app role (npm run db:roles)`;
  if (r.owner) return `connected as ${r.role}, the journal's owner: it can disable the journal's triggers; run the ledger as its app role (npm run db:roles)`;
  return null;
}
