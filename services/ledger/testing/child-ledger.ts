import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Credential } from '../grpc/auth.js';

/**
 * A real ledger process (`node --import tsx services/ledger/main.ts`) for end-to-end tests that
 * need to kill, restart or signal the server. It is configured only through the environment,
 * like production, listens on 127.0.0.1:0 unless told otherwise, and is ready when it logs the
 * JSON line `{"msg":"ready","port":…}`.
 */

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const mainPath = path.join(repoRoot, 'services/ledger/main.ts');

export interface ChildLedgerOptions {
  databaseUrl: string;
  credentials: readonly Credential[];
  currencies?: readonly string[];
  /** 0 (the default) lets the OS pick; the bound port is read from the "ready" log line. */
  port?: number;
  /** Extra LEDGER_* variables (batch size, drain grace, …). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildLedger {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly address: string;
  /** The Prometheus endpoint's port. */
  readonly metricsPort: number | null;
  /** Parsed JSON log lines (the last 5 000), for assertions and for diagnostics. */
  readonly logs: Record<string, unknown>[];
  /** Non-JSON output and stderr (the last 500 lines). */
  readonly stderr: string[];
  readonly exited: Promise<ChildExit>;
  readonly hasExited: boolean;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, wait up to `timeoutMs` for the exit, SIGKILL after that. */
  stop(timeoutMs?: number): Promise<ChildExit>;
  /** SIGKILL (no drain) and wait for the exit. */
  kill(): Promise<ChildExit>;
}

const live = new Set<ChildLedger>();

process.once('exit', () => {
  for (const c of live) if (!c.hasExited) c.child.kill('SIGKILL');
});

/** Kills (SIGKILL) every child ledger this process started that is still running. */
export async function killChildLedgers(): Promise<void> {
  await Promise.all([...live].map((c) => (c.hasExited ? c.exited : c.kill())));
}

export async function startChildLedger(options: ChildLedgerOptions): Promise<ChildLedger> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k === 'NODE_OPTIONS' || k.startsWith('VITEST') || k.startsWith('LEDGER_')) continue;
    env[k] = v;
  }
  Object.assign(env, {
    DATABASE_URL: options.databaseUrl,
    LEDGER_GRPC_ADDR: `127.0.0.1:${options.port ?? 0}`,
    LEDGER_METRICS_ADDR: '127.0.0.1:0',
    LEDGER_CREDENTIALS: JSON.stringify(options.credentials),
    LEDGER_CURRENCIES: (options.currencies ?? ['USD', 'EUR']).join(','),
    LOG_LEVEL: process.env.CHILD_LEDGER_LOG_LEVEL ?? 'info',
    ...options.env,
  });
  const child = spawn(process.execPath, ['--import', 'tsx', mainPath], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const keep = <T>(list: T[], item: T, max: number) => {
    list.push(item);
    if (list.length > max) list.splice(0, list.length - max);
  };
  let exitedFlag = false;
  const exited = new Promise<ChildExit>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve({ code, signal });
    });
  });

  let onReady: ((port: number) => void) | null = null;
  let metricsPort: number | null = null;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: Record<string, unknown> | null = null;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      keep(stderr, line, 500);
      return;
    }
    keep(logs, parsed, 5_000);
    if (parsed.msg === 'ready' && typeof parsed.port === 'number' && onReady) {
      if (typeof parsed.metricsPort === 'number') metricsPort = parsed.metricsPort;
      onReady(parsed.port);
    }
  });
  createInterface({ input: child.stderr! }).on('line', (line) => keep(stderr, line, 500));

  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`child ledger not ready after ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
      onReady = (p) => {
        clearTimeout(timer);
        resolve(p);
      };
      void exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`child ledger exited before ready (code ${e.code}, signal ${e.signal})`));
      });
    });
  } catch (error) {
    if (!exitedFlag) child.kill('SIGKILL');
    await exited;
    const tail = [...stderr.slice(-20), ...logs.slice(-20).map((l) => JSON.stringify(l))].join('\n');
    throw new Error(`${(error as Error).message}\n${tail}`);
  }

  const handle: ChildLedger = {
    child,
    pid: child.pid!,
    port,
    address: `127.0.0.1:${port}`,
    metricsPort,
    logs,
    stderr,
    exited,
    get hasExited() {
      return exitedFlag;
    },
    signal(signal) {
      if (!exitedFlag) child.kill(signal);
    },
    async stop(timeoutMs = 15_000) {
      if (!exitedFlag) child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!exitedFlag) child.kill('SIGKILL');
      }, timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (!exitedFlag) child.kill('SIGKILL');
      return exited;
    },
  };
  live.add(handle);
  void exited.then(() => live.delete(handle));
  return handle;
}
