// `npm run db:roles -- --owner ledger_owner --app ledger_app`: creates the ledger's database
// roles (store/db-roles.ts) on DATABASE_URL, which must be a superuser's. Passwords come from
// LEDGER_OWNER_PASSWORD and LEDGER_APP_PASSWORD when set (never from the command line, where
// they would show in the process list).
import { parseArgs } from 'node:util';
import { applyRoles } from './store/db-roles.js';

const { values } = parseArgs({
  options: { owner: { type: 'string', default: 'ledger_owner' }, app: { type: 'string', default: 'ledger_app' } },
});
const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL (a superuser) is required');
  process.exit(2);
}
try {
  await applyRoles(url, {
    owner: values.owner!,
    app: values.app!,
    ownerPassword: process.env.LEDGER_OWNER_PASSWORD,
    appPassword: process.env.LEDGER_APP_PASSWORD,
  });
  console.log(`roles ready: ${values.owner} owns the ledger's tables and runs migrations; the ledger connects as ${values.app}`);
} catch (error) {
  console.error(`db:roles failed: ${(error as Error).message}`);
  process.exit(1);
}
