import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createLedgerClient } from '../../services/ledger/client/index.js';
import { spawnServer, type ServerChild } from './children.js';
import type { BenchOptions } from './options.js';
import { benchDir, repoRoot } from './paths.js';
import { freePort, sleep, within } from './waits.js';

/** The processes under test: the ledger itself and the no-op gRPC server. */
export interface RunningServer {
  child: ServerChild;
  address: string;
}

/** A no-op server (noop-server.ts): `bare` grpc-js, or the ledger's own gRPC `stack`. */
export async function startNoopServer(mode: 'bare' | 'stack', token: string): Promise<RunningServer> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  let ready: () => void = () => undefined;
  const readyLine = new Promise<void>((resolve) => (ready = resolve));
  const child = spawnServer(`noop-server (${mode})`, ['--import', 'tsx', path.join(benchDir, 'noop-server.ts'), mode, address], {
    cwd: repoRoot,
    env: { ...process.env, BENCH_TOKEN: token },
    onLine: (line) => {
      if (line.includes('"msg":"ready"')) ready();
    },
  });
  const died = child.exited.then((how) => {
    throw new Error(`the no-op server ended before it was ready (${how}):\n${child.tail.join('\n')}`);
  });
  await within(Promise.race([readyLine, died]), 30_000, 'no-op server start');
  return { child, address };
}

export interface LedgerLogSummary {
  counts: Map<string, number>;
  samples: string[];
}

export async function startLedger(
  databaseUrl: string,
  token: string,
  options: BenchOptions,
  logs: LedgerLogSummary,
): Promise<RunningServer> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  // The parent's environment minus anything that would point the ledger elsewhere; other
  // LEDGER_* settings pass through on purpose (tuning experiments) and are printed in the report.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  Object.assign(env, {
    DATABASE_URL: databaseUrl,
    LEDGER_GRPC_ADDR: address,
    LEDGER_CREDENTIALS: JSON.stringify([{ name: 'bench', token, role: 'admin' }]),
    LOG_LEVEL: 'warn',
  });
  const profiling = options.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir] : [];
  let ready: () => void = () => undefined;
  const readyLine = new Promise<void>((resolve) => (ready = resolve));
  const child = spawnServer(
    'ledger',
    [...profiling, '--import', 'tsx', '--import', path.join(benchDir, 'parent-watch-preload.ts'), 'services/ledger/main.ts'],
    {
      cwd: repoRoot,
      env,
      onLine: (line) => {
        let record: { msg?: unknown; level?: unknown } | null = null;
        try {
          record = JSON.parse(line) as { msg?: unknown; level?: unknown };
        } catch {
          // Not a log line (a stack trace from the runtime, say): keep it as it is.
        }
        if (record?.msg === 'ready') ready();
        const level = typeof record?.level === 'number' ? record.level : 50;
        if (level >= 40) {
          const key = typeof record?.msg === 'string' ? record.msg : line.slice(0, 120);
          logs.counts.set(key, (logs.counts.get(key) ?? 0) + 1);
          if (logs.samples.length < 5) logs.samples.push(line.slice(0, 2_000));
        }
      },
    },
  );
  const died = child.exited.then((how) => {
    throw new Error(`the ledger ended before it was ready (${how}):\n${child.tail.join('\n')}`);
  });
  // The ledger logs "ready" at info level, which LOG_LEVEL=warn hides; so readiness is also
  // probed with a real call: NOT_FOUND for an unknown user means the service answers.
  const startTimeoutMs = 60_000;
  await within(
    Promise.race([readyLine, probeLedger(address, token, Date.now() + startTimeoutMs), died]),
    startTimeoutMs,
    'ledger start',
  );
  return { child, address };
}

/** Calls the ledger until it answers, or until `deadlineMs` (epoch ms) has passed. */
async function probeLedger(address: string, token: string, deadlineMs: number): Promise<void> {
  const client = createLedgerClient(address, token);
  try {
    while (Date.now() < deadlineMs) {
      try {
        await client.getBalance({ userId: 'bench-readiness-probe' }, { timeoutMs: 1_000 });
        return;
      } catch (error) {
        if ((error as { code?: unknown }).code === grpc.status.NOT_FOUND) return;
        await sleep(100);
      }
    }
    throw new Error('the ledger did not answer before the start deadline');
  } finally {
    client.close();
  }
}

