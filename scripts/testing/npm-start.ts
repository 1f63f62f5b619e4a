import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { testCredentials } from '../../services/ledger/testing/ledger-harness.js';
import { createTestRoles } from '../../services/ledger/testing/ledger-roles.js';
import { createTestDatabase } from '../../services/testing/test-db.js';

/**
 * `npm start` as a newcomer runs it, in a child process of its own process group, configured
 * only by the environment; ready when it logs `{"msg":"system ready"}` with every service's
 * address. Stopped as a supervisor stops it: SIGTERM to the npm process itself.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * What the child keeps of this process's environment: PATH and HOME as a newcomer's shell has
 * them, and a libfaketime shift if the suite runs under one (CI's date-shifted run), so that
 * the system's clock agrees with the database's.
 */
function passThrough(): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && (k === 'PATH' || k === 'HOME' || k === 'LD_PRELOAD' || k.startsWith('FAKETIME'))) kept[k] = v;
  }
  return kept;
}

export interface RunningSystem {
  child: ChildProcess;
  /** Parsed JSON log lines. */
  lines: Record<string, unknown>[];
  /** Non-JSON output (npm's, stderr). */
  other: string[];
  ready: Record<string, unknown>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every process below npm, read from /proc. */
  descendants(): number[];
  /** SIGKILL to the whole process group (a failing test's cleanup). */
  kill(): void;
}

export async function startSystem(env: Record<string, string>, readyTimeoutMs = 60_000): Promise<RunningSystem> {
  const child = spawn('npm', ['start', '--silent'], {
    cwd: root,
    env: { ...passThrough(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const lines: Record<string, unknown>[] = [];
  const other: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  let ready: Record<string, unknown>;
  try {
    ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm start not ready in ${readyTimeoutMs} ms:\n${other.slice(-30).join('\n')}`)), readyTimeoutMs);
      void exited.then(() => reject(new Error(`npm start exited before ready:\n${[...other, ...lines.map((l) => JSON.stringify(l))].slice(-30).join('\n')}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          lines.push(parsed);
          if (parsed.msg === 'system ready') {
            clearTimeout(timer);
            resolve(parsed);
          }
        } catch {
          other.push(line);
        }
      });
      createInterface({ input: child.stderr! }).on('line', (line) => other.push(line));
    });
  } catch (error) {
    kill();
    throw error;
  }
  return {
    child,
    lines,
    other,
    ready,
    exited,
    kill,
    descendants() {
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
      visit(child.pid!);
      return out;
    },
  };
}

export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * `npm start` as the system tests run it: on a fresh test database with the ledger's roles (the
 * ledger as the app role, migrations as the owner), the machine's Redis under a prefix of its
 * own, every listener on a free port, and a temporary data directory. `env` adds to or
 * overrides that. `close()` stops it (SIGTERM, then SIGKILL) and removes what it made.
 */
export interface TestSystem {
  system: RunningSystem;
  credentials: ReturnType<typeof testCredentials>;
  tokenOf(role: string): string;
  close(): Promise<void>;
}

export async function startTestSystem(name: string, env: Record<string, string> = {}): Promise<TestSystem> {
  const db = await createTestDatabase();
  const roles = await createTestRoles(db.url);
  const dataDir = await mkdtemp(path.join(tmpdir(), `${name}-`));
  const credentials = testCredentials();
  const cleanup = async () => {
    await db.drop();
    await roles.drop();
    await rm(dataDir, { recursive: true, force: true });
  };
  let system: RunningSystem;
  try {
    system = await startSystem({
      DATABASE_URL: roles.urlAs(roles.app, db.url),
      DATABASE_MIGRATION_URL: roles.urlAs(roles.owner, db.url),
      // The payments service keeps its own schema, outside the ledger roles' grants.
      PAYMENTS_DATABASE_URL: db.url,
      PAYMENTS_HTTP_ADDR: '127.0.0.1:0',
      PAYMENTS_APPLY_PERIOD_MS: '100',
      LEDGER_CREDENTIALS: JSON.stringify(credentials),
      LEDGER_GRPC_ADDR: '127.0.0.1:0',
      LEDGER_METRICS_ADDR: '127.0.0.1:0',
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      WORKER_QUEUE_PREFIX: `${name}-${process.pid}-${Date.now()}`,
      WORKER_METRICS_ADDR: '127.0.0.1:0',
      WAVESPEED_SIM_LATENCY_MS: '200',
      DATA_DIR: dataDir,
      ...env,
    });
  } catch (error) {
    await cleanup();
    throw error;
  }
  return {
    system,
    credentials,
    tokenOf: (role) => credentials.find((c) => c.role === role)!.token,
    async close() {
      if (system.child.exitCode === null && system.child.signalCode === null) system.child.kill('SIGTERM');
      await Promise.race([system.exited, new Promise((r) => setTimeout(r, 15_000))]);
      system.kill();
      await cleanup();
    },
  };
}
