import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { adminUrl } from '../../testing/test-db.js';
import { applyRoles } from '../store/db-roles.js';

export interface TestRoles {
  owner: string;
  app: string;
  /** `url` connecting as the given role (trust authentication, as on the test machines). */
  urlAs(role: string, url: string): string;
  /** Drops both roles; call after the databases they own objects in are dropped. */
  drop(): Promise<void>;
}

/**
 * Ledger roles for one test database. Roles are cluster-wide, so their names carry a random
 * suffix, and they are dropped at the end.
 */
export async function createTestRoles(databaseUrl: string): Promise<TestRoles> {
  const suffix = randomBytes(4).toString('hex');
  const owner = `ledger_owner_t${suffix}`;
  const app = `ledger_app_t${suffix}`;
  await applyRoles(databaseUrl, { owner, app });
  return {
    owner,
    app,
    urlAs(role, url) {
      const u = new URL(url);
      u.username = role;
      u.password = '';
      return u.toString();
    },
    async drop() {
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        for (const role of [app, owner]) await admin.query(`DROP ROLE IF EXISTS ${admin.escapeIdentifier(role)}`);
      } finally {
        await admin.end();
      }
    },
  };
}
