import type { Credential } from '../grpc/auth.js';
import { startChild, type Child } from '../../testing/child-process.js';

/**
 * A real ledger process (`node --import tsx services/ledger/main.ts`, through the shared child
 * runner) for end-to-end tests that need to kill, restart or signal the server. It is
 * configured only through the environment, like production (none of the test's own LEDGER_*
 * variables leak in), listens on 127.0.0.1:0 unless told otherwise, and is ready when it logs
 * the JSON line `{"msg":"ready","port":…}`.
 */

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

export type ChildExit = Awaited<Child['exited']>;

export interface ChildLedger extends Child {
  readonly port: number;
  readonly address: string;
  /** The Prometheus endpoint's port. */
  readonly metricsPort: number | null;
}

const live = new Set<ChildLedger>();

/** Kills (SIGKILL) every child ledger this process started that is still running. */
export async function killChildLedgers(): Promise<void> {
  await Promise.all([...live].map((c) => (c.hasExited ? c.exited : c.kill())));
}

export async function startChildLedger(options: ChildLedgerOptions): Promise<ChildLedger> {
  const child = await startChild(
    'services/ledger/main.ts',
    {
      DATABASE_URL: options.databaseUrl,
      LEDGER_GRPC_ADDR: `127.0.0.1:${options.port ?? 0}`,
      LEDGER_METRICS_ADDR: '127.0.0.1:0',
      LEDGER_CREDENTIALS: JSON.stringify(options.credentials),
      LEDGER_CURRENCIES: (options.currencies ?? ['USD', 'EUR']).join(','),
      LOG_LEVEL: process.env.CHILD_LEDGER_LOG_LEVEL ?? 'info',
      ...options.env,
    },
    options.readyTimeoutMs ?? 20_000,
    [],
    ['LEDGER_'],
  );
  const port = child.ready.port as number;
  const metricsPort = typeof child.ready.metricsPort === 'number' ? child.ready.metricsPort : null;
  // Stops wait 15 s for the drain before SIGKILL unless told otherwise.
  const handle: ChildLedger = Object.assign(Object.create(child) as Child, {
    port,
    address: `127.0.0.1:${port}`,
    metricsPort,
    stop: (timeoutMs = 15_000) => child.stop(timeoutMs),
  }) as ChildLedger;
  live.add(handle);
  void child.exited.then(() => live.delete(handle));
  return handle;
}
