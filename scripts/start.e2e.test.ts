import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, createLedgerClient } from '../services/ledger/client/index.js';
import { testCredentials } from '../services/ledger/testing/ledger-harness.js';
import { createTestRoles, type TestRoles } from '../services/ledger/testing/ledger-roles.js';
import { createTestDatabase, type TestDatabase } from '../services/testing/test-db.js';

// `npm start` as a newcomer runs it, stopped as a supervisor stops it: SIGTERM to the npm
// process itself. npm passes the signal to its script's process only; the script must therefore
// be the app (exec), not a shell or a tsx wrapper that would leave the app running.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every process below `pid`, read from /proc (children of children included). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number) => {
    let children: string;
    try {
      children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      return;
    }
    for (const c of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
      out.push(c);
      visit(c);
    }
  };
  visit(pid);
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start', () => {
  let db: TestDatabase;
  let roles: TestRoles;
  let dataDir: string;
  let cleanup = () => {};
  beforeAll(async () => {
    db = await createTestDatabase();
    // As in production: migrations as the owner, the ledger as the app role (so it has no
    // reason to warn about its role).
    roles = await createTestRoles(db.url);
    dataDir = await mkdtemp(path.join(tmpdir(), 'start-e2e-'));
  });
  afterAll(async () => {
    cleanup();
    await db?.drop();
    await roles?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('serves, and SIGTERM to the npm process stops every process it started, logging no error', async () => {
    const credentials = testCredentials();
    const child = spawn('npm', ['start', '--silent'], {
      cwd: root,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATABASE_URL: roles.urlAs(roles.app, db.url),
        DATABASE_MIGRATION_URL: roles.urlAs(roles.owner, db.url),
        // The payments service keeps its own schema, outside the ledger roles' grants.
        PAYMENTS_DATABASE_URL: db.url,
        PAYMENTS_HTTP_ADDR: '127.0.0.1:0',
        LEDGER_CREDENTIALS: JSON.stringify(credentials),
        LEDGER_GRPC_ADDR: '127.0.0.1:0',
        LEDGER_DRAIN_GRACE_MS: '3000',
        DATA_DIR: dataDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so that a failing test can still kill everything it started.
      detached: true,
    });
    cleanup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const lines: Record<string, unknown>[] = [];
    const stderr: string[] = [];
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready:\n${stderr.join('\n')}`)), 30_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          lines.push(parsed);
          if (parsed.msg === 'system ready') {
            clearTimeout(timer);
            resolve(Number(String(parsed.ledger).split(':')[1]));
          }
        } catch {
          stderr.push(line);
        }
      });
      createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
    });

    const admin = createLedgerClient(`127.0.0.1:${port}`, credentials.find((c) => c.role === 'admin')!.token);
    await admin.grant({ idempotencyKey: 'start-e2e', userId: 'u-start', credits: 5n, bucket: Bucket.BUCKET_BONUS });
    expect((await admin.getBalance({ userId: 'u-start' })).available).toBe(5n);
    admin.close();

    const started = descendants(child.pid!);
    expect(started.length).toBeGreaterThan(0);
    const stopAt = Date.now();
    child.kill('SIGTERM');
    const exit = await exited;
    // Within the drain grace (3 s) plus process exit.
    expect(Date.now() - stopAt).toBeLessThan(8_000);
    expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);
    for (let i = 0; i < 50 && started.some(alive); i += 1) await new Promise((r) => setTimeout(r, 100));
    expect(started.filter(alive)).toEqual([]);
    expect(lines.some((l) => l.msg === 'stopped')).toBe(true);
    // pino levels: 40 warn, 50 error, 60 fatal.
    expect(lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
    expect(stderr.filter((l) => /error/i.test(l))).toEqual([]);
  });
});
