// `npm run bench`: the ledger's throughput, latency and CPU per command against a real
// PostgreSQL, next to two references measured in the same run: the transport ceiling (a bare
// grpc-js server that does nothing) and the unbatched baseline (one SQL transaction per
// command, straight from Node). See usage in options.ts; the report goes to stdout, progress
// to stderr.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { createLedgerClient } from '../../services/ledger/client.js';
import { seedBaseline } from './baseline.js';
import { forkModule, killAllChildrenNow, spawnServer, stopAllChildren, stopChild, type ServerChild } from './children.js';
import { analyze, createMigratedDatabase, dropDatabase, postgresPids, serverFacts } from './databases.js';
import { LatencyHistogram } from './histogram.js';
import { consumeRequestBytes, representativeConsumeResponse } from './messages.js';
import { allScenarios, ledgerScenarios, parseOptions, usage, type BenchOptions, type ScenarioName } from './options.js';
import { clockTicksPerSecond, machineInfo, machineTicks, processCpuSplitMicros, processesCpuMicros, type MachineTicks } from './proc-stat.js';
import type { ChildMessage, ParentMessage, RunRequest, RunResult, SeedResult, Target, Workload } from './protocol.js';
import { summariseProfiles, type ProfileWindow } from './profile-summary.js';
import { figuresTable, resultJson, targetChecks, targetsTable, type ScenarioFigures } from './report.js';
import { creditsForHotUser, creditsPerUser, hotUser } from './users.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(benchDir, '../..');

const progress = (message: string): void => {
  process.stderr.write(`[bench] ${message}\n`);
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Rejects after `ms` with `what` in the message; the bench never waits on anything unbounded. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Client processes

interface Worker {
  index: number;
  process: ChildProcess;
  pid: number;
  exited: Promise<string>;
  pending: Map<number, { resolve: (m: ChildMessage) => void; reject: (e: Error) => void }>;
}

let nextRequestId = 1;

async function startWorkers(count: number): Promise<Worker[]> {
  const modulePath = path.join(benchDir, 'client-worker.ts');
  const workers = await Promise.all(
    Array.from({ length: count }, async (_, index): Promise<Worker> => {
      const { process: child, exited } = forkModule(modulePath, repoRoot);
      if (child.pid === undefined) throw new Error(`client process ${index} could not be started`);
      const worker: Worker = { index, process: child, pid: child.pid, exited, pending: new Map() };
      const hello = new Promise<void>((resolve, reject) => {
        child.on('message', (message: ChildMessage) => {
          if (message.type === 'hello') return resolve();
          const waiter = worker.pending.get(message.id);
          if (!waiter) return;
          worker.pending.delete(message.id);
          if (message.type === 'failure') waiter.reject(new Error(`client process ${index}: ${message.message}`));
          else waiter.resolve(message);
        });
        void exited.then((how) => {
          const error = new Error(`client process ${index} ended (${how})`);
          reject(error);
          for (const waiter of worker.pending.values()) waiter.reject(error);
          worker.pending.clear();
        });
      });
      // Loading TypeScript through tsx takes a moment; the first scenario must not pay for it.
      await within(hello, 60_000, `client process ${index} start`);
      return worker;
    }),
  );
  return workers;
}

function ask(worker: Worker, message: Exclude<ParentMessage, { type: 'shutdown' }>, timeoutMs: number): Promise<ChildMessage> {
  const answer = new Promise<ChildMessage>((resolve, reject) => {
    worker.pending.set(message.id, { resolve, reject });
    worker.process.send(message);
  });
  return within(answer, timeoutMs, `client process ${worker.index}, request ${message.type}`);
}

// ---------------------------------------------------------------------------------------------
// Servers under test

interface RunningServer {
  child: ServerChild;
  address: string;
}

async function startNoopServer(): Promise<RunningServer> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  let ready: () => void = () => undefined;
  const readyLine = new Promise<void>((resolve) => (ready = resolve));
  const child = spawnServer('noop-server', ['--import', 'tsx', path.join(benchDir, 'noop-server.ts'), address], {
    cwd: repoRoot,
    env: process.env,
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

interface LedgerLogSummary {
  counts: Map<string, number>;
  samples: string[];
}

async function startLedger(
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
  await within(Promise.race([readyLine, probeLedger(address, token), died]), 60_000, 'ledger start');
  return { child, address };
}

async function probeLedger(address: string, token: string): Promise<void> {
  const client = createLedgerClient(address, token);
  try {
    for (;;) {
      try {
        await client.getBalance({ userId: 'bench-readiness-probe' }, { timeoutMs: 1_000 });
        return;
      } catch (error) {
        if ((error as { code?: unknown }).code === grpc.status.NOT_FOUND) return;
        await sleep(100);
      }
    }
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// One scenario

interface Sample {
  atMs: number;
  /** The same instant on the monotonic clock in µs, which is how V8 stamps profile samples. */
  monoUs: number;
  server: { user: number; system: number } | null;
  clients: number;
  postgres: number;
  machine: MachineTicks;
}

function sample(serverPid: number | null, workers: readonly Worker[], pgPids: readonly number[]): Sample {
  return {
    atMs: performance.now(),
    monoUs: Number(process.hrtime.bigint() / 1000n),
    server: serverPid === null ? null : processCpuSplitMicros(serverPid),
    clients: processesCpuMicros(workers.map((w) => w.pid)),
    postgres: processesCpuMicros(pgPids),
    machine: machineTicks(),
  };
}

interface ScenarioPlan {
  name: ScenarioName;
  operation: string;
  workload: Workload;
  target: Target;
  serverPid: number | null;
  databaseName: string | null;
}

async function runScenario(
  plan: ScenarioPlan,
  workers: readonly Worker[],
  options: BenchOptions,
  admin: pg.Client,
  runTag: string,
  windows: ProfileWindow[],
): Promise<ScenarioFigures> {
  progress(`${plan.name}: warm-up ${options.warmupMs / 1000} s, measure ${options.measureMs / 1000} s`);
  const startAtMs = Date.now() + 250;
  const windowStartMs = startAtMs + options.warmupMs;
  const windowEndMs = windowStartMs + options.measureMs;
  const replies = workers.map((worker) => {
    const request: RunRequest = {
      type: 'run',
      id: nextRequestId++,
      target: plan.target,
      workload: plan.workload,
      population: { count: options.users, hotUser },
      inFlight: options.inFlightPerClient,
      startAtMs,
      warmupMs: options.warmupMs,
      measureMs: options.measureMs,
      maxCalls: options.maxCallsPerClient,
      callTimeoutMs: options.callTimeoutMs,
      keyPrefix: `${runTag}-${plan.name}-${worker.index}`,
    };
    // Bounded: the run itself, then the calls still in flight (each has a deadline).
    return ask(worker, request, options.warmupMs + options.measureMs + options.callTimeoutMs + 15_000);
  });
  // Keep the replies observed from the start, so that an early failure is not "unhandled".
  const settled = Promise.allSettled(replies);

  // The database's backends exist once the warm-up has opened the connections.
  await sleep(windowStartMs - 100 - Date.now());
  const pgPids = plan.databaseName === null ? await postgresPids(admin, '') : await postgresPids(admin, plan.databaseName);
  await sleep(windowStartMs - Date.now());
  const before = sample(plan.serverPid, workers, pgPids);
  await sleep(windowEndMs - Date.now());
  const after = sample(plan.serverPid, workers, pgPids);

  const outcomes = await settled;
  const results: RunResult[] = [];
  for (const outcome of outcomes) {
    if (outcome.status === 'rejected') throw outcome.reason;
    if (outcome.value.type !== 'run-result') throw new Error(`unexpected answer ${outcome.value.type}`);
    results.push(outcome.value);
  }
  if (plan.serverPid !== null && (before.server === null || after.server === null)) {
    throw new Error(`${plan.name}: the server process (pid ${plan.serverPid}) went away during the measurement`);
  }

  const histogram = new LatencyHistogram();
  let callHistogram: LatencyHistogram | null = null;
  const errors: Record<string, number> = {};
  let ops = 0;
  let opsPerS = 0;
  for (const r of results) {
    histogram.merge(new LatencyHistogram(r.histogram));
    if (r.callHistogram) {
      callHistogram ??= new LatencyHistogram();
      callHistogram.merge(new LatencyHistogram(r.callHistogram));
    }
    ops += r.ops;
    if (r.measuredMs > 0) opsPerS += r.ops / (r.measuredMs / 1000);
    for (const [name, n] of Object.entries(r.errors)) errors[name] = (errors[name] ?? 0) + n;
  }
  windows.push({ name: plan.name, startUs: before.monoUs, endUs: after.monoUs });
  const windowS = (after.atMs - before.atMs) / 1000;
  const perOp = (micros: number) => (ops > 0 ? micros / ops : Number.NaN);
  const serverMicros =
    before.server === null || after.server === null
      ? null
      : after.server.user + after.server.system - before.server.user - before.server.system;
  const serverSysMicros = before.server === null || after.server === null ? null : after.server.system - before.server.system;
  const clientMicros = after.clients - before.clients;
  const postgresMicros = after.postgres - before.postgres;
  const busyCores = (after.machine.busy - before.machine.busy) / clockTicksPerSecond / windowS;
  const knownCores = ((serverMicros ?? 0) + clientMicros + postgresMicros) / 1e6 / windowS;
  const figures: ScenarioFigures = {
    name: plan.name,
    operation: plan.operation,
    ops,
    opsPerS,
    p50Ms: histogram.percentileMs(0.5),
    p99Ms: histogram.percentileMs(0.99),
    callP50Ms: callHistogram?.percentileMs(0.5) ?? null,
    callP99Ms: callHistogram?.percentileMs(0.99) ?? null,
    serverCpuUsPerOp: serverMicros === null ? null : perOp(serverMicros),
    serverSysCpuUsPerOp: serverSysMicros === null ? null : perOp(serverSysMicros),
    clientCpuUsPerOp: perOp(clientMicros),
    postgresCpuUsPerOp: perOp(postgresMicros),
    machineBusyCores: busyCores,
    otherBusyCores: Math.max(0, busyCores - knownCores),
    windowS,
    errors,
    firstError: results.map((r) => r.firstError).find((e) => e !== null) ?? null,
    callLimitHit: results.some((r) => r.callLimitHit),
    entriesPerBatch: null,
  };
  const errorCount = Object.values(errors).reduce((s, n) => s + n, 0);
  progress(
    `${plan.name}: ${Math.round(opsPerS)} ops/s, p50 ${figures.p50Ms.toFixed(2)} ms, p99 ${figures.p99Ms.toFixed(2)} ms` +
      (figures.serverCpuUsPerOp === null ? '' : `, server ${figures.serverCpuUsPerOp.toFixed(1)} µs/op`) +
      (errorCount > 0 ? `, ${errorCount} errors (first: ${figures.firstError})` : ''),
  );
  return figures;
}

/**
 * How many journal entries each write scenario's batches held on average. Every batch is one
 * PostgreSQL transaction, so the entries that share an xmin were written by the same batch.
 * Counted once the ledger has stopped, so that the query costs the measurements nothing.
 */
async function countBatches(url: string, runTag: string, figures: Map<ScenarioName, ScenarioFigures>): Promise<void> {
  const client = new pg.Client({ connectionString: url, query_timeout: 60_000 });
  await client.connect();
  try {
    for (const name of ['consume_uniform', 'consume_hot_user', 'reserve_capture'] as const) {
      const f = figures.get(name);
      if (!f) continue;
      const { rows } = await client.query<{ entries: number; batches: number }>(
        `SELECT count(*)::int AS entries, count(DISTINCT xmin::text)::int AS batches
           FROM entries WHERE starts_with(idempotency_key, $1)`,
        [`${runTag}-${name}-`],
      );
      const row = rows[0];
      if (row && row.batches > 0) f.entriesPerBatch = row.entries / row.batches;
    }
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Seeding

async function seedLedger(workers: readonly Worker[], address: string, token: string, options: BenchOptions, runTag: string): Promise<void> {
  const started = performance.now();
  const perWorker = Math.ceil(options.users / workers.length);
  const seedTimeoutMs = 120_000;
  const answers = await Promise.all(
    workers.map((worker) =>
      ask(
        worker,
        {
          type: 'seed',
          id: nextRequestId++,
          target: { kind: 'ledger', address, token },
          from: Math.min(options.users, worker.index * perWorker),
          to: Math.min(options.users, (worker.index + 1) * perWorker),
          withHotUser: worker.index === 0,
          hotUser,
          credits: creditsPerUser.toString(),
          hotUserCredits: creditsForHotUser.toString(),
          inFlight: options.inFlightPerClient,
          callTimeoutMs: options.callTimeoutMs,
          keyPrefix: runTag,
          deadlineMs: Date.now() + seedTimeoutMs - 5_000,
        },
        seedTimeoutMs,
      ),
    ),
  );
  let granted = 0;
  for (const answer of answers) {
    if (answer.type !== 'seed-result') throw new Error(`unexpected answer ${answer.type}`);
    const seed: SeedResult = answer;
    if (Object.keys(seed.errors).length > 0) {
      throw new Error(`seeding failed: ${JSON.stringify(seed.errors)} (first: ${seed.firstError})`);
    }
    granted += seed.granted;
  }
  if (granted !== options.users + 1) throw new Error(`seeding granted ${granted} users of ${options.users + 1}`);
  progress(`seeded ${granted} users in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------------------------------------
// The run

interface Cleanup {
  databases: string[];
  adminUrl: string;
}

const cleanupState: Cleanup = { databases: [], adminUrl: '' };
let cleaning: Promise<void> | null = null;

/** Stops every child and drops the bench's databases; safe to call more than once. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren(5_000);
    for (const name of cleanupState.databases.splice(0)) {
      await within(dropDatabase(cleanupState.adminUrl, name), 15_000, `drop database ${name}`).catch((error: unknown) =>
        progress(`could not drop database ${name}: ${(error as Error).message}`),
      );
    }
  })();
  return cleaning;
}

async function main(options: BenchOptions): Promise<void> {
  const runStarted = performance.now();
  const runTag = `b${randomBytes(4).toString('hex')}`;
  const token = randomBytes(24).toString('hex');
  cleanupState.adminUrl = options.adminUrl;

  const facts = await serverFacts(options.adminUrl);
  const machine = machineInfo(facts.version);
  if (facts.synchronousCommit !== 'on' || facts.fsync !== 'on') {
    progress(`warning: synchronous_commit=${facts.synchronousCommit}, fsync=${facts.fsync}; figures are not comparable`);
  }

  const wantLedger = ledgerScenarios.some((s) => options.scenarios.includes(s));
  const wantBaseline = options.scenarios.includes('baseline');
  const ledgerDb = options.databaseName;
  const baselineDb = `${options.databaseName}_baseline`;
  if (wantLedger) {
    cleanupState.databases.push(ledgerDb);
    await createMigratedDatabase(options.adminUrl, ledgerDb);
  }
  if (wantBaseline) {
    cleanupState.databases.push(baselineDb);
    await createMigratedDatabase(options.adminUrl, baselineDb);
  }
  const ledgerDbUrl = new URL(options.adminUrl);
  ledgerDbUrl.pathname = `/${ledgerDb}`;
  const baselineDbUrl = new URL(options.adminUrl);
  baselineDbUrl.pathname = `/${baselineDb}`;

  const admin = new pg.Client({ connectionString: options.adminUrl, query_timeout: 10_000 });
  await admin.connect();
  const figures = new Map<ScenarioName, ScenarioFigures>();
  const ledgerLogs: LedgerLogSummary = { counts: new Map(), samples: [] };
  const windows: ProfileWindow[] = [];
  let profiles: string | null = null;
  try {
    progress(`starting ${options.clients} client processes`);
    const workers = await startWorkers(options.clients);

    if (options.scenarios.includes('transport')) {
      const noop = await startNoopServer();
      figures.set(
        'transport',
        await runScenario(
          {
            name: 'transport',
            operation: 'no-op Consume call',
            workload: 'noop',
            target: { kind: 'noop', address: noop.address, token },
            serverPid: noop.child.pid,
            databaseName: null,
          },
          workers,
          options,
          admin,
          runTag,
          windows,
        ),
      );
      await stopChild(noop.child.process, noop.child.exited, 5_000);
    }

    if (wantLedger) {
      progress('starting the ledger');
      const ledger = await startLedger(ledgerDbUrl.toString(), token, options, ledgerLogs);
      await seedLedger(workers, ledger.address, token, options, runTag);
      await analyze(ledgerDbUrl.toString());
      const operations: Record<(typeof ledgerScenarios)[number], string> = {
        consume_uniform: 'Consume 1 credit',
        consume_hot_user: 'Consume 1 credit',
        reserve_capture: 'Reserve+Capture pair (2 calls)',
        get_balance: 'GetBalance',
      };
      for (const name of ledgerScenarios) {
        if (!options.scenarios.includes(name)) continue;
        figures.set(
          name,
          await runScenario(
            {
              name,
              operation: operations[name],
              workload: name,
              target: { kind: 'ledger', address: ledger.address, token },
              serverPid: ledger.child.pid,
              databaseName: ledgerDb,
            },
            workers,
            options,
            admin,
            runTag,
            windows,
          ),
        );
      }
      // SIGTERM lets the ledger drain and exit by itself, which is also when --cpu-prof
      // writes its profile.
      const how = await stopChild(ledger.child.process, ledger.child.exited, 20_000);
      if (how !== 'exit code 0') progress(`the ledger ended with ${how}`);
      await countBatches(ledgerDbUrl.toString(), runTag, figures);
      if (options.cpuProfDir) {
        const ledgerWindows = windows.filter((w) => (ledgerScenarios as readonly string[]).includes(w.name));
        profiles = await summariseProfiles(options.cpuProfDir, ledger.child.pid, ledgerWindows);
      }
    }

    if (wantBaseline) {
      await seedBaseline(baselineDbUrl.toString(), hotUser, creditsForHotUser);
      figures.set(
        'baseline',
        await runScenario(
          {
            name: 'baseline',
            operation: 'Consume as 1 SQL transaction',
            workload: 'baseline',
            target: { kind: 'baseline', databaseUrl: baselineDbUrl.toString() },
            serverPid: null,
            databaseName: baselineDb,
          },
          workers,
          options,
          admin,
          runTag,
          windows,
        ),
      );
    }

    for (const worker of workers) {
      if (worker.process.connected) worker.process.send({ type: 'shutdown' } satisfies ParentMessage);
    }
    await Promise.all(workers.map((w) => within(w.exited, 10_000, `client process ${w.index} exit`).catch(() => w.process.kill('SIGKILL'))));
  } finally {
    await admin.end().catch(() => undefined);
  }

  const targets = targetChecks(figures);
  const ledgerOverrides = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => k.startsWith('LEDGER_') && !['LEDGER_GRPC_ADDR', 'LEDGER_CREDENTIALS'].includes(k)),
  );
  const config = {
    warmup_s: options.warmupMs / 1000,
    measure_s: options.measureMs / 1000,
    client_processes: options.clients,
    in_flight_per_client: options.inFlightPerClient,
    in_flight_total: options.clients * options.inFlightPerClient,
    users: options.users,
    max_calls_per_client: options.maxCallsPerClient,
    synchronous_commit: facts.synchronousCommit,
    fsync: facts.fsync,
    ledger_env_overrides: ledgerOverrides,
    cpu_profiled: options.cpuProfDir !== null,
  };
  const ordered = new Map(allScenarios.filter((s) => figures.has(s)).map((s) => [s, figures.get(s)!]));

  const pairs = figures.get('reserve_capture');
  const out: string[] = [];
  out.push('## Credit ledger bench', '');
  out.push(
    `Machine: ${machine.cpu_model}, ${machine.nproc} cores, ${machine.memory_gib} GiB, Node ${machine.node_version}, ` +
      `PostgreSQL ${machine.postgres_version} (synchronous_commit=${facts.synchronousCommit}), ${machine.kernel}`,
  );
  out.push(
    `Load: ${options.clients} client processes × ${options.inFlightPerClient} calls in flight = ` +
      `${options.clients * options.inFlightPerClient}; warm-up ${config.warmup_s} s, measure ${config.measure_s} s per scenario; ` +
      `${options.users} uniform users; a Consume request is ${consumeRequestBytes(`${runTag}-consume_uniform-0`)} bytes, ` +
      `its response about ${representativeConsumeResponse().length} bytes.` +
      (Object.keys(ledgerOverrides).length > 0 ? ` Ledger overrides: ${JSON.stringify(ledgerOverrides)}.` : ''),
  );
  if (options.cpuProfDir) out.push('**The ledger ran under --cpu-prof: its figures include the profiler.**');
  const noisiest = Math.max(0, ...[...ordered.values()].map((f) => f.otherBusyCores));
  if (noisiest > 0.2) {
    out.push(
      `**The machine was not quiet: other processes kept up to ${noisiest.toFixed(2)} cores busy during a ` +
        'measure window (column "other"); throughput and latency figures are depressed accordingly.**',
    );
  }
  out.push('', figuresTable([...ordered.values()]), '');
  out.push(
    'server CPU = utime+stime of the ledger (or no-op server) process over the measure window ÷ ops; ' +
      '(sys) = its kernel part; PostgreSQL CPU = backends of the scenario’s database plus background processes; ' +
      '"other" busy cores = machine CPU not spent by the processes above (other work on the machine). ' +
      'reserve_capture counts a Reserve+Capture pair as one op (its calls/s are twice its ops/s) and times the pair' +
      (pairs?.callP50Ms != null && pairs.callP99Ms != null
        ? ` (per call: p50 ${pairs.callP50Ms.toFixed(2)} ms, p99 ${pairs.callP99Ms.toFixed(2)} ms)`
        : '') +
      '. entries/batch = journal entries per PostgreSQL transaction over the whole scenario.',
  );
  out.push('', '### Targets', '', targetsTable(targets), '');
  if (ledgerLogs.counts.size > 0) {
    out.push('### Ledger warnings and errors', '');
    for (const [msg, n] of ledgerLogs.counts) out.push(`- ${n}× ${msg}`);
    for (const s of ledgerLogs.samples) out.push(`  - e.g. ${s}`);
    out.push('');
  }
  if (profiles) out.push('### Ledger CPU profile (self time)', '', profiles, '');
  out.push(`Total bench time: ${((performance.now() - runStarted) / 1000).toFixed(1)} s`);
  process.stdout.write(`${out.join('\n')}\n`);

  if (options.jsonPath) {
    await writeFile(options.jsonPath, `${JSON.stringify(resultJson(ordered, { machine, config, targets }), null, 2)}\n`);
    progress(`wrote ${options.jsonPath}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point: whatever happens, children are stopped and the databases dropped.

let options: BenchOptions | 'help';
try {
  options = parseOptions(process.argv.slice(2));
} catch (error) {
  console.error(`${(error as Error).message}\n\n${usage}`);
  process.exit(2);
}
if (options === 'help') {
  process.stdout.write(usage);
  process.exit(0);
}

process.on('exit', killAllChildrenNow);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping`);
    // Bounded: a stuck cleanup must not keep the terminal hostage.
    setTimeout(() => process.exit(code), 30_000).unref();
    void cleanup().finally(() => process.exit(code));
  });
}

// The whole run is bounded too, whatever the flags say.
const runLimitMs =
  120_000 + options.scenarios.length * (options.warmupMs + options.measureMs + options.callTimeoutMs + 20_000);
const watchdog = setTimeout(() => {
  progress(`the run exceeded ${Math.round(runLimitMs / 1000)} s; stopping`);
  void cleanup().finally(() => process.exit(1));
}, runLimitMs);
watchdog.unref();

try {
  await main(options);
  await cleanup();
} catch (error) {
  progress(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  await cleanup();
  process.exitCode = 1;
}
clearTimeout(watchdog);
