// `npm run import-legacy -- --users user_credits.csv --purchases user_credit_purchases.csv`
// Imports the old product's balances as opening ledger entries, through the ledger's gRPC API
// at LEDGER_ADDR (default 127.0.0.1:50051) with an admin token in LEDGER_TOKEN. Validates both
// files completely first: any bad row is reported with its line and nothing is imported.
// Running it again changes nothing. `--dry-run` validates and prints the plan only. At its end
// it analyzes the ledger's tables through DATABASE_URL (their owner's URL, e.g. the one the
// migrations use): a bulk load leaves the planner's statistics stale.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createLedgerClient } from '../../services/ledger/client/index.js';
import { LegacyValidationError, parseLegacyExport } from './legacy-rows.js';
import { planImport } from './plan-import.js';
import { analyzeTables } from './analyze-tables.js';
import { runImport } from './run-import.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string' },
    purchases: { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    // The target ledger's LEDGER_CURRENCIES, so that what validates also imports.
    currencies: { type: 'string', default: process.env.LEDGER_CURRENCIES ?? 'USD,EUR,GBP' },
  },
});
if (!values.users || !values.purchases) {
  console.error('usage: import-legacy --users user_credits.csv --purchases user_credit_purchases.csv [--dry-run]');
  process.exit(2);
}
let exported;
try {
  exported = parseLegacyExport(await readFile(values.users, 'utf8'), await readFile(values.purchases, 'utf8'), {
    currencies: new Set(values.currencies.split(',').map((c) => c.trim())),
  });
} catch (error) {
  if (error instanceof LegacyValidationError) {
    console.error(error.message);
    process.exit(1);
  }
  throw error;
}
const plan = planImport(exported, new Date());
console.log(JSON.stringify({ msg: 'validated', users: exported.users.length, purchases: exported.purchases.length, commands: plan.length }));
if (values['dry-run']) process.exit(0);
const token = process.env.LEDGER_TOKEN;
if (!token) {
  console.error('import-legacy: LEDGER_TOKEN (an admin credential) is not set');
  process.exit(2);
}
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error("import-legacy: DATABASE_URL (the ledger tables' owner, to ANALYZE them at the end) is not set");
  process.exit(2);
}
const ledger = createLedgerClient(process.env.LEDGER_ADDR ?? '127.0.0.1:50051', token);
try {
  const report = await runImport(ledger, plan, 32, (done, total) => console.log(JSON.stringify({ msg: 'progress', done, total })));
  console.log(JSON.stringify({ msg: 'imported', ...report, credits: report.credits.toString() }));
  await analyzeTables(databaseUrl);
  console.log(JSON.stringify({ msg: 'analyzed' }));
} finally {
  ledger.close();
}
