import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { ask, nextRequestId, type Worker } from './client-pool.js';
import { postgresPids } from './databases.js';
import { LatencyHistogram } from './histogram.js';
import type { BenchOptions, ScenarioName } from './options.js';
import { clockTicksPerSecond, machineTicks, processCpuSplitMicros, processesCpuMicros, type MachineTicks } from './proc-stat.js';
import type { ProfileWindow } from './profile-summary.js';
import type { RunRequest, RunResult, SeedResult, Target, Workload } from './protocol.js';
import type { ScenarioFigures } from './report.js';
import { createLedgerClient, Bucket } from '../../services/ledger/client/index.js';
import { creditsForHotUser, creditsPerUser, hotUser, spentLotsCount, spentLotsUser } from './users.js';
import { progress, sleep } from './waits.js';

/**
 * Running one scenario: all client processes start together at an agreed instant, warm up,
 * then the parent samples CPU counters at the start and end of the measure window while the
 * clients count what completes inside it.
 */
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

export interface ScenarioPlan {
  name: ScenarioName;
  /** 1-based; keeps idempotency keys of repeated rounds apart. */
  round: number;
  operation: string;
  workload: Workload;
  target: Target;
  serverPid: number | null;
  databaseName: string | null;
}

export async function runScenario(
  plan: ScenarioPlan,
  workers: readonly Worker[],
  options: BenchOptions,
  admin: pg.Client,
  runTag: string,
  windows: ProfileWindow[],
): Promise<ScenarioFigures> {
  const label = options.rounds > 1 ? `${plan.name} (round ${plan.round})` : plan.name;
  progress(`${label}: warm-up ${options.warmupMs / 1000} s, measure ${options.measureMs / 1000} s`);
  const startAtMs = Date.now() + 250;
  const windowStartMs = startAtMs + options.warmupMs;
  const windowEndMs = windowStartMs + options.measureMs;
  const replies = workers.map((worker) => {
    const request: RunRequest = {
      type: 'run',
      id: nextRequestId(),
      target: plan.target,
      workload: plan.workload,
      population: { count: options.users, hotUser },
      inFlight: options.inFlightPerClient,
      startAtMs,
      warmupMs: options.warmupMs,
      measureMs: options.measureMs,
      maxCalls: options.maxCallsPerClient,
      callTimeoutMs: options.callTimeoutMs,
      keyPrefix: `${runTag}-${plan.name}-${plan.round}-${worker.index}`,
    };
    // Bounded: the run itself, then the calls still in flight (each has a deadline).
    return ask(worker, request, options.warmupMs + options.measureMs + options.callTimeoutMs + 15_000);
  });
  // Keep the replies observed from the start, so that an early failure is not "unhandled".
  const settled = Promise.allSettled(replies);

  // The database's backends exist once the warm-up has opened the connections.
  await sleep(windowStartMs - 100 - Date.now());
  const pgPids = await postgresPids(admin, plan.databaseName);
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
  windows.push({ name: label, ops, startUs: before.monoUs, endUs: after.monoUs });
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
    roundsOpsPerS: [opsPerS],
  };
  const errorCount = Object.values(errors).reduce((s, n) => s + n, 0);
  progress(
    `${label}: ${Math.round(opsPerS)} ops/s, p50 ${figures.p50Ms.toFixed(2)} ms, p99 ${figures.p99Ms.toFixed(2)} ms` +
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
export async function countBatches(url: string, runTag: string, figures: Map<ScenarioName, ScenarioFigures>): Promise<void> {
  const client = new pg.Client({ connectionString: url, query_timeout: 60_000 });
  await client.connect();
  try {
    for (const name of ['consume_uniform', 'consume_with_readers', 'consume_poisoned', 'consume_hot_user', 'reserve_capture'] as const) {
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


/** Grants every user of the population (and the hot user) a large lot, through the clients. */
export async function seedLedger(workers: readonly Worker[], address: string, token: string, options: BenchOptions, runTag: string): Promise<void> {
  const started = performance.now();
  const perWorker = Math.ceil(options.users / workers.length);
  const seedTimeoutMs = 120_000;
  const answers = await Promise.all(
    workers.map((worker) =>
      ask(
        worker,
        {
          type: 'seed',
          id: nextRequestId(),
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


/**
 * The *_spent_lots user: `spentLotsCount` lots of one credit, then one large lot, then as many
 * one-credit Consumes, which drain the small lots first (same bucket, no expiry: the oldest lot
 * goes first), so the user ends with 1,000 spent lots and one live one.
 */
export async function seedSpentLots(address: string, token: string, runTag: string): Promise<void> {
  const started = performance.now();
  const client = createLedgerClient(address, token);
  const options = { timeoutMs: 30_000 };
  const inParallel = async (count: number, call: (i: number) => Promise<unknown>) => {
    let next = 0;
    const lane = async () => {
      while (next < count) await call(next++);
    };
    await Promise.all(Array.from({ length: 32 }, lane));
  };
  try {
    const grant = (key: string, credits: bigint) =>
      client.grant({ idempotencyKey: `${runTag}:spent:${key}`, userId: spentLotsUser, credits, bucket: Bucket.BUCKET_BONUS }, options);
    // One at a time would take a while; in parallel the lots' order is the batches', which is
    // all the drawdown needs as long as the large lot comes last.
    await inParallel(spentLotsCount, (i) => grant(`small:${i}`, 1n));
    await grant('large', creditsForHotUser);
    await inParallel(spentLotsCount, (i) =>
      client.consume({ idempotencyKey: `${runTag}:spent:consume:${i}`, userId: spentLotsUser, credits: 1n }, options),
    );
    const balance = await client.getBalance({ userId: spentLotsUser }, options);
    if (balance.lots.length !== 1 || balance.available !== creditsForHotUser) {
      throw new Error(`the spent-lots user has ${balance.lots.length} live lots and ${balance.available} credits`);
    }
  } finally {
    client.close();
  }
  progress(`seeded ${spentLotsCount} spent lots in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
