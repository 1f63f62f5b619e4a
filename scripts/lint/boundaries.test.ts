import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkImport, checkTree, violationsIn } from './boundaries.js';

describe('import boundaries', () => {
  it('the repository keeps them', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    expect(checkTree(root)).toEqual([]);
  });

  it('another service reaches the ledger only through its client folder', () => {
    expect(checkImport('services/payments/apply.ts', 'services/ledger/client/index')).toBeNull();
    expect(checkImport('services/payments/apply.ts', 'services/ledger/domain/ledger-state')).toMatch(/only services\/ledger\/client/);
    expect(checkImport('services/worker/main.ts', 'services/ledger/grpc/errors')).toMatch(/only services\/ledger\/client/);
    expect(checkImport('services/worker/main.ts', 'services/generated/proto/credits/ledger/v1/ledger')).toMatch(/through services\/ledger\/client/);
    expect(checkImport('scripts/import-legacy/legacy-rows.ts', 'services/ledger/domain/limits')).not.toBeNull();
  });

  it('tests may use the ledger harness; production code may not', () => {
    expect(checkImport('services/payments/webhook.e2e.test.ts', 'services/ledger/testing/ledger-harness')).toBeNull();
    expect(checkImport('services/payments/testing/harness.ts', 'services/ledger/testing/ledger-harness')).toBeNull();
    expect(checkImport('services/payments/webhook.ts', 'services/ledger/testing/ledger-harness')).not.toBeNull();
  });

  it('shared folders import no service, and services do not import each other', () => {
    expect(checkImport('services/lib/db.ts', 'services/ledger/client/index')).toMatch(/service-neutral/);
    expect(checkImport('services/testing/test-db.ts', 'services/payments/inbox')).toMatch(/service-neutral/);
    expect(checkImport('services/lib/db.ts', 'services/lib/logger')).toBeNull();
    expect(checkImport('services/worker/main.ts', 'services/payments/catalog')).toMatch(/may not import services\/payments/);
    expect(checkImport('services/worker/main.ts', 'services/lib/logger')).toBeNull();
  });

  it('finds static, re-exported and dynamic imports, with their line', () => {
    const text = [
      "import { a } from '../ledger/domain/types.js';",
      "export { b } from '../ledger/store/read-balance.js';",
      'const c = await import("../ledger/ledger.js");',
      "import { d } from '../ledger/client/index.js';",
    ].join('\n');
    expect(violationsIn('services/payments/x.ts', text).map((v) => v.line)).toEqual([1, 2, 3]);
  });
});
