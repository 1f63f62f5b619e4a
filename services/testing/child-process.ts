import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * A service's main.ts run as a real child process (`node --import tsx …`), configured only by
 * its environment, ready when it logs the JSON line `{"msg":"ready",…}`. Tests use it to kill
 * (-9) or signal a process: ledgers (ledger/testing/child-ledger.ts), workers, the Wavespeed
 * simulator (services do not import each other). The parent's environment is inherited, less
 * vitest's and `dropEnvPrefixes` (a child ledger must not inherit the test's LEDGER_* settings).
 */

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Child {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The "ready" line's fields (ports and such). */
  readonly ready: Record<string, unknown>;
  readonly logs: Record<string, unknown>[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly hasExited: boolean;
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(signal: NodeJS.Signals): void;
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<Child>();
process.once('exit', () => {
  for (const c of live) if (!c.hasExited) c.child.kill('SIGKILL');
});

export async function startChild(
  mainPath: string,
  env: Record<string, string>,
  readyTimeoutMs = 30_000,
  nodeArgs: string[] = [],
  dropEnvPrefixes: string[] = [],
): Promise<Child> {
  const fullEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k === 'NODE_OPTIONS' || k.startsWith('VITEST') || dropEnvPrefixes.some((p) => k.startsWith(p))) continue;
    fullEnv[k] = v;
  }
  Object.assign(fullEnv, { LOG_LEVEL: process.env.CHILD_LOG_LEVEL ?? 'info' }, env);
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', path.join(repoRoot, mainPath)], {
    cwd: repoRoot,
    env: fullEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  let exitedFlag = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      exitedFlag = true;
      resolve({ code, signal });
    }),
  );
  let onReady: ((fields: Record<string, unknown>) => void) | null = null;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      logs.push(parsed);
      if (logs.length > 20_000) logs.splice(0, 1_000);
      if (parsed.msg === 'ready' && onReady) onReady(parsed);
    } catch {
      stderr.push(line);
    }
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 500) stderr.shift();
  });
  let ready: Record<string, unknown>;
  try {
    ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${mainPath} not ready after ${readyTimeoutMs} ms`)), readyTimeoutMs);
      onReady = (fields) => {
        clearTimeout(timer);
        resolve(fields);
      };
      void exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`${mainPath} exited before ready (code ${e.code}, signal ${e.signal})`));
      });
    });
  } catch (error) {
    if (!exitedFlag) child.kill('SIGKILL');
    await exited;
    throw new Error(`${(error as Error).message}\n${[...stderr.slice(-20), ...logs.slice(-20).map((l) => JSON.stringify(l))].join('\n')}`);
  }
  const handle: Child = {
    child,
    pid: child.pid!,
    ready,
    logs,
    stderr,
    exited,
    get hasExited() {
      return exitedFlag;
    },
    async kill() {
      if (!exitedFlag) child.kill('SIGKILL');
      return exited;
    },
    signal(signal) {
      if (!exitedFlag) child.kill(signal);
    },
    async stop(timeoutMs = 20_000) {
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
  };
  live.add(handle);
  void exited.then(() => live.delete(handle));
  return handle;
}
