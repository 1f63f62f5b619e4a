// A bench client process. The parent forks two (or --clients) of these so that the load comes
// from other processes than the one under test, as it would in production; each keeps a fixed
// number of calls in flight and reports what it completed inside the measure window.
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { Bucket } from '../../services/ledger/client/index.js';
import { createLedgerClient, type LedgerClient } from '../../services/ledger/client/index.js';
import { baselineConsume, loadBaselineAccounts } from './baseline.js';
import { LatencyHistogram } from './histogram.js';
import type { ChildMessage, ParentMessage, RunRequest, RunResult, SeedRequest, SeedResult } from './protocol.js';
import { poisonEvery, poisonSuffix, spentLotsUser, userName } from './users.js';

if (!process.send) {
  console.error('client-worker.ts is started by scripts/bench/main.ts over an IPC channel');
  process.exit(2);
}

const send = (message: ChildMessage): void => {
  process.send?.(message);
};

// Without its parent this process has nothing to do; leaving at once keeps a crashed or killed
// bench from leaving load generators behind.
process.on('disconnect', () => process.exit(0));

/** One gRPC channel per server address, reused by every scenario that targets it. */
const clients = new Map<string, LedgerClient>();
function clientFor(address: string, token: string): LedgerClient {
  const key = `${address} ${token}`;
  let client = clients.get(key);
  if (!client) {
    client = createLedgerClient(address, token);
    clients.set(key, client);
  }
  return client;
}

function errorName(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const code = (error as { code?: unknown }).code;
    // grpc-js errors carry a numeric status; pg errors a SQLSTATE string.
    if (typeof code === 'number') return grpc.status[code] ?? `grpc-${code}`;
    if (typeof code === 'string') return code;
  }
  return error instanceof Error ? error.name : 'unknown';
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const randomIndex = (n: number): number => Math.floor(Math.random() * n);

type Operation = (seq: number) => Promise<void>;

/** Called with each call's latency by operations made of several calls. */
type CallRecorder = (latencyMicros: number) => void;

interface PreparedRun {
  operation: Operation;
  dispose(): Promise<void>;
}

async function prepare(request: RunRequest, recordCall: CallRecorder): Promise<PreparedRun> {
  const { target, workload, population, callTimeoutMs, keyPrefix } = request;
  const options = { timeoutMs: callTimeoutMs };
  const nothing = async () => undefined;
  if (target.kind === 'baseline') {
    if (workload !== 'baseline') throw new Error(`workload ${workload} cannot run against the baseline`);
    // One connection per call in flight, as the ledger's callers would each hold one.
    const pool = new pg.Pool({
      connectionString: target.databaseUrl,
      max: request.inFlight,
      connectionTimeoutMillis: callTimeoutMs,
      query_timeout: callTimeoutMs,
      application_name: 'credit-ledger-bench-baseline',
    });
    pool.on('error', () => undefined);
    const accounts = await loadBaselineAccounts(pool, population.hotUser);
    return {
      operation: (seq) => baselineConsume(pool, accounts, population.hotUser, `${keyPrefix}:${seq}`, 1n),
      dispose: () => pool.end(),
    };
  }
  const client = clientFor(target.address, target.token);
  if (target.kind === 'noop') {
    // The same call as consume_uniform, through the same client code, so that the client
    // side's work and the bytes on the wire match; only the server differs.
    return {
      operation: async (seq) => {
        await client.consume({ idempotencyKey: `${keyPrefix}:${seq}`, userId: userName(randomIndex(population.count)), credits: 1n }, options);
      },
      dispose: nothing,
    };
  }
  switch (workload) {
    case 'consume_uniform':
      return {
        operation: async (seq) => {
          await client.consume({ idempotencyKey: `${keyPrefix}:${seq}`, userId: userName(randomIndex(population.count)), credits: 1n }, options);
        },
        dispose: nothing,
      };
    case 'consume_poisoned':
      // As consume_uniform, but every poisonEvery-th call's key is one the bench's trigger makes
      // PostgreSQL reject: that call must fail alone (its neighbours commit); it still counts
      // as an operation, since the ledger did the work of answering it.
      return {
        operation: async (seq) => {
          const poisoned = seq % poisonEvery === poisonEvery - 1;
          const request = { idempotencyKey: `${keyPrefix}:${seq}${poisoned ? poisonSuffix : ''}`, userId: userName(randomIndex(population.count)), credits: 1n };
          if (!poisoned) {
            await client.consume(request, options);
            return;
          }
          const failed = await client.consume(request, options).then(() => false, () => true);
          if (!failed) throw new Error('a poisoned Consume was written');
        },
        dispose: nothing,
      };
    case 'consume_hot_user':
      return {
        operation: async (seq) => {
          await client.consume({ idempotencyKey: `${keyPrefix}:${seq}`, userId: population.hotUser, credits: 1n }, options);
        },
        dispose: nothing,
      };
    case 'reserve_capture':
      // One operation is the pair: a job reserves credits, then captures them when it finishes.
      return {
        operation: async (seq) => {
          const reserveStarted = performance.now();
          const hold = await client.reserve(
            { idempotencyKey: `${keyPrefix}:${seq}:r`, userId: userName(randomIndex(population.count)), credits: 1n },
            options,
          );
          const captureStarted = performance.now();
          recordCall((captureStarted - reserveStarted) * 1000);
          await client.capture({ idempotencyKey: `${keyPrefix}:${seq}:c`, holdId: hold.holdId, credits: 1n }, options);
          recordCall((performance.now() - captureStarted) * 1000);
        },
        dispose: nothing,
      };
    case 'get_balance':
      return {
        operation: async () => {
          await client.getBalance({ userId: userName(randomIndex(population.count)) }, options);
        },
        dispose: nothing,
      };
    case 'consume_spent_lots':
      return {
        operation: async (seq) => {
          await client.consume({ idempotencyKey: `${keyPrefix}:${seq}`, userId: spentLotsUser, credits: 1n }, options);
        },
        dispose: nothing,
      };
    case 'get_balance_spent_lots':
      return {
        operation: async () => {
          await client.getBalance({ userId: spentLotsUser }, options);
        },
        dispose: nothing,
      };
    case 'get_balance_as_of':
      // As of a moment ago: every entry of the journal is before the cut, so each of the
      // user's lots is read from its last transfer (one index probe per account).
      return {
        operation: async () => {
          await client.getBalance({ userId: userName(randomIndex(population.count)), asOf: new Date(Date.now() - 1_000) }, options);
        },
        dispose: nothing,
      };
    case 'list_entries':
      // A full page of 100 (the journal's first, the seeding's grants), every transfer with its
      // accounts' codes.
      return {
        operation: async () => {
          const page = await client.listEntries({ pageSize: 100, pageToken: '' }, options);
          if (page.entries.length !== 100) throw new Error(`a page of ${page.entries.length} entries`);
        },
        dispose: nothing,
      };
    default:
      throw new Error(`workload ${workload} cannot run against target ${target.kind}`);
  }
}

/**
 * A closed loop: `inFlight` lanes, each starting a new call as soon as its previous one ends,
 * until the measure window closes or the call budget is spent. Only calls that complete inside
 * the measure window count, and their latencies are what the histogram holds.
 */
async function run(request: RunRequest): Promise<RunResult> {
  const windowStartMs = request.startAtMs + request.warmupMs;
  const endMs = windowStartMs + request.measureMs;
  const histogram = new LatencyHistogram();
  // Created on first use: only operations made of several calls record calls.
  const calls: { histogram: LatencyHistogram | null } = { histogram: null };
  const recordCall: CallRecorder = (latencyMicros) => {
    const doneAt = Date.now();
    if (doneAt < windowStartMs || doneAt >= endMs) return;
    calls.histogram ??= new LatencyHistogram();
    calls.histogram.record(latencyMicros);
  };
  const prepared = await prepare(request, recordCall);
  const errors: Record<string, number> = {};
  let firstError: string | null = null;
  let ops = 0;
  let issued = 0;
  let limitHitAtMs: number | null = null;

  const lane = async (): Promise<void> => {
    for (;;) {
      const now = Date.now();
      if (now >= endMs) return;
      if (issued >= request.maxCalls) {
        limitHitAtMs ??= now;
        return;
      }
      const seq = issued;
      issued += 1;
      const started = performance.now();
      try {
        await prepared.operation(seq);
        const latencyMicros = (performance.now() - started) * 1000;
        const doneAt = Date.now();
        if (doneAt >= windowStartMs && doneAt < endMs) {
          ops += 1;
          histogram.record(latencyMicros);
        }
      } catch (error) {
        const name = errorName(error);
        errors[name] = (errors[name] ?? 0) + 1;
        firstError ??= error instanceof Error ? error.message : String(error);
        // A failing server answers at once; pausing the lane keeps a broken run from
        // spinning the CPU that the other processes are being measured on.
        await sleep(5);
      }
    }
  };

  try {
    const wait = request.startAtMs - Date.now();
    if (wait > 0) await sleep(wait);
    await Promise.all(Array.from({ length: request.inFlight }, lane));
  } finally {
    await prepared.dispose();
  }
  const windowEndMs = limitHitAtMs === null ? endMs : Math.min(endMs, limitHitAtMs);
  return {
    type: 'run-result',
    id: request.id,
    ops,
    histogram: histogram.toJSON(),
    callHistogram: calls.histogram?.toJSON() ?? null,
    errors,
    firstError,
    measuredMs: Math.max(0, windowEndMs - windowStartMs),
    callLimitHit: limitHitAtMs !== null,
  };
}

/** Grants every user of [from, to) a large lot, `inFlight` calls at a time. */
async function seed(request: SeedRequest): Promise<SeedResult> {
  const client = clientFor(request.target.address, request.target.token);
  const users: { userId: string; credits: bigint }[] = [];
  for (let i = request.from; i < request.to; i += 1) users.push({ userId: userName(i), credits: BigInt(request.credits) });
  if (request.withHotUser) users.push({ userId: request.hotUser, credits: BigInt(request.hotUserCredits) });
  const errors: Record<string, number> = {};
  let firstError: string | null = null;
  let granted = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < users.length && Date.now() < request.deadlineMs) {
      const { userId, credits } = users[next]!;
      next += 1;
      try {
        await client.grant(
          { idempotencyKey: `${request.keyPrefix}:grant:${userId}`, userId, credits, bucket: Bucket.BUCKET_BONUS },
          { timeoutMs: request.callTimeoutMs },
        );
        granted += 1;
      } catch (error) {
        const name = errorName(error);
        errors[name] = (errors[name] ?? 0) + 1;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: request.inFlight }, lane));
  return { type: 'seed-result', id: request.id, granted, errors, firstError };
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'shutdown') {
    for (const client of clients.values()) client.close();
    process.exit(0);
  }
  const work = message.type === 'run' ? run(message) : seed(message);
  work.then(send, (error: unknown) =>
    send({ type: 'failure', id: message.id, message: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});

send({ type: 'hello' });
