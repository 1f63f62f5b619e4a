import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * Import boundaries between the services (checked by `npm run lint`).
 *
 * - Ledger rules live only in services/ledger/. From outside it, only its public surface may be
 *   imported: `services/ledger/client/` (the gRPC client, error reasons, roles, limits, the
 *   generated types). Tests and test harnesses may also use `services/ledger/testing/` (a real
 *   ledger to test against), and the tools that start or measure the ledger itself
 *   (`scripts/start.ts`, `scripts/bench/`) may use its composition root and server.
 * - The ledger's generated protobuf code is reached through the client folder, not directly.
 * - services/lib/ and services/testing/ are service-neutral: they import no service.
 * - Services do not import each other except through the ledger's public surface.
 */

export interface Violation {
  file: string;
  line: number;
  specifier: string;
  rule: string;
}

/** Top-level service folders under services/ that are not services. */
const neutralFolders = new Set(['lib', 'testing', 'generated']);

const isTestFile = (file: string) => /\.test\.ts$/.test(file) || /(^|\/)testing\//.test(file);
const ledgerToolFiles = (file: string) => file === 'scripts/start.ts' || file.startsWith('scripts/bench/');

function serviceOf(file: string): string | null {
  const m = /^services\/([^/]+)\//.exec(file);
  return m ? m[1]! : null;
}

/** Whether `file` (repo-relative, POSIX) may import `target` (repo-relative, without extension). */
export function checkImport(file: string, target: string): string | null {
  const from = serviceOf(file);
  const to = serviceOf(target);
  if (to === null) return null;
  if (from !== null && neutralFolders.has(from) && from !== 'generated') {
    if (!neutralFolders.has(to)) return `services/${from}/ is service-neutral and may not import services/${to}/`;
    return null;
  }
  if (target.startsWith('services/generated/proto/credits/ledger/') && from !== 'ledger') {
    return 'the ledger\'s generated types are imported through services/ledger/client/';
  }
  if (to === 'ledger' && from !== 'ledger') {
    if (target.startsWith('services/ledger/client/')) return null;
    if (target.startsWith('services/ledger/testing/') && isTestFile(file)) return null;
    if (ledgerToolFiles(file)) return null;
    return 'outside services/ledger/ only services/ledger/client/ may be imported (tests: also services/ledger/testing/)';
  }
  if (to !== from && !neutralFolders.has(to) && from !== null && to !== 'ledger') {
    return `services/${from}/ may not import services/${to}/`;
  }
  return null;
}

const importPattern = /(?:^|\s)(?:import|export)\s[^;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** Every relative import of one file's text that breaks a rule. */
export function violationsIn(file: string, text: string): Violation[] {
  const violations: Violation[] = [];
  for (const match of text.matchAll(importPattern)) {
    const specifier = (match[1] ?? match[2])!;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.(js|ts)$/, '');
    const rule = checkImport(file, target);
    if (rule) {
      const line = text.slice(0, match.index + match[0].indexOf(specifier)).split('\n').length;
      violations.push({ file, line, specifier, rule });
    }
  }
  return violations;
}

function listTs(root: string, dir: string, out: string[]): void {
  for (const name of readdirSync(path.join(root, dir))) {
    if (name === 'node_modules' || name === 'generated' || name.startsWith('.')) continue;
    const rel = path.posix.join(dir, name);
    if (statSync(path.join(root, rel)).isDirectory()) listTs(root, rel, out);
    else if (name.endsWith('.ts')) out.push(rel);
  }
}

export function checkTree(root: string): Violation[] {
  const files: string[] = [];
  for (const dir of ['services', 'scripts']) listTs(root, dir, files);
  return files.flatMap((f) => violationsIn(f, readFileSync(path.join(root, f), 'utf8')));
}
