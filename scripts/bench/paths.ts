import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the bench's own modules are, and the repository root the ledger is started from. */
export const benchDir = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(benchDir, '../..');
