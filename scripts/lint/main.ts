// `npm run lint` step: fails when an import crosses a service boundary (scripts/lint/boundaries.ts).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkTree } from './boundaries.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const violations = checkTree(root);
for (const v of violations) console.error(`${v.file}:${v.line}: import '${v.specifier}': ${v.rule}`);
if (violations.length > 0) {
  console.error(`${violations.length} import boundary violation(s)`);
  process.exit(1);
}
console.log('import boundaries: ok');
