import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Every process the bench starts is registered here, so that whatever way the bench ends
 * (normally, on an error, on SIGINT/SIGTERM, or through process.exit) none is left running.
 */
const live = new Set<ChildProcess>();

export interface ServerChild {
  name: string;
  process: ChildProcess;
  pid: number;
  /** The last lines the child wrote on stdout and stderr, for error messages. */
  tail: string[];
  /** Resolves with the exit code (or signal) once the child has exited. */
  exited: Promise<string>;
}

const tailLinesMax = 40;

function track(child: ChildProcess): Promise<string> {
  live.add(child);
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve(signal ? `signal ${signal}` : `exit code ${code ?? 'unknown'}`);
    });
    // A child that cannot be spawned at all emits 'error' and never 'exit'.
    child.once('error', (error) => {
      live.delete(child);
      resolve(`spawn error: ${error.message}`);
    });
  });
}

/**
 * Starts a server process (the ledger or the no-op server) with its output piped to us, line
 * by line, to `onLine`. Its stdin stays an open pipe that we never write to: parent-watch.ts
 * in the child exits when that pipe closes, i.e. when this process dies.
 */
export function spawnServer(
  name: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; onLine?: (line: string, stream: 'stdout' | 'stderr') => void },
): ServerChild {
  const child = spawn(process.execPath, args, { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = track(child);
  if (child.pid === undefined) throw new Error(`${name}: could not be started`);
  const tail: string[] = [];
  for (const stream of ['stdout', 'stderr'] as const) {
    const readable = child[stream];
    if (!readable) continue;
    createInterface({ input: readable }).on('line', (line) => {
      tail.push(line);
      if (tail.length > tailLinesMax) tail.shift();
      options.onLine?.(line, stream);
    });
  }
  return { name, process: child, pid: child.pid, tail, exited };
}

/** Forks a TypeScript module with an IPC channel (the client processes). */
export function forkModule(modulePath: string, cwd: string): { process: ChildProcess; exited: Promise<string> } {
  const child = fork(modulePath, [], {
    cwd,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return { process: child, exited: track(child) };
}

/**
 * Asks a child to stop with SIGTERM and waits for it, up to `graceMs`; after that it is
 * killed. Resolves once it has exited either way.
 */
export async function stopChild(child: ChildProcess, exited: Promise<string>, graceMs: number): Promise<string> {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops every child still running, politely first, then by force. */
export async function stopAllChildren(graceMs: number): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
          setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, graceMs).unref();
        }),
    ),
  );
}

/** The last resort from a synchronous 'exit' handler: no waiting, just SIGKILL. */
export function killAllChildrenNow(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}
