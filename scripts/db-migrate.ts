// `npm run db:migrate`: applies prisma/migrations to DATABASE_URL.
import { migrate } from '../services/lib/migrate.js';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error('db:migrate: DATABASE_URL is not set');
  process.exit(2);
}
const result = await migrate(databaseUrl);
console.log(JSON.stringify({ msg: 'migrated', ...result }));
