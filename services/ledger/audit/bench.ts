// Benchmark of the audit's journal verifier (audit README, "Performance"): builds a journal of
// --entries entries through the ledger's own batched write path (in process, no gRPC: the same
// executeBatch, hash chain and SQL as a running ledger), keeps it in a database named after its
// size so later runs reuse it, then times `verifyJournal` over all of it and prints figures.
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { ManualClock } from '../../lib/clock.js';
import { createPool } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { migrate } from '../../lib/migrate.js';
import { parseConsume } from '../commands/consume.js';
import { parseCapture } from '../commands/capture.js';
import { parsePurchase } from '../commands/purchase.js';
import { parseReserve } from '../commands/reserve.js';
import { requestHash } from '../domain/canonical.js';
import type { Command } from '../domain/types.js';
import { Ledger } from '../ledger.js';
import { verifyJournal } from './verify-journal.js';

const { values: args } = parseArgs({
  options: {
    entries: { type: 'string', default: '1000000' },
    users: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    'page-size': { type: 'string', default: '2000' },
    rebuild: { type: 'boolean', default: false },
    drop: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(`npm run bench:audit -- [--entries N] [--users N] [--rounds N] [--page-size N] [--rebuild] [--drop] [--json FILE]
  Builds (once) a journal of N entries in database audit_bench_<N> and times the verifier over it.
  --rebuild  build the journal again even if the database exists; --drop  drop it at the end.
  Admin URL: TEST_DATABASE_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).`);
  process.exit(0);
}

const adminUrl = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const entries = Number(args.entries);
const users = Number(args.users);
const name = `audit_bench_${entries}`;
const url = (() => {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
})();

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function headSeq(): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query<{ seq: string }>('SELECT seq::text FROM journal_head')).rows[0]!.seq);
  } finally {
    await c.end();
  }
}

/**
 * The journal: one paid purchase per user (a lot and its deferred revenue), then Consumes of one
 * credit with an upstream cost (3 transfers each: lot → consumed, deferred → recognised, cost →
 * payable), and one in ten a Reserve + Capture pair instead. Commands go straight into the write
 * queue, many in flight, so batches fill up as they would under load.
 */
async function build(): Promise<void> {
  await admin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  });
  await migrate(url);
  const pool = createPool(url, 4);
  const writePool = createPool(url, 2, { pipeline: true });
  const clock = new ManualClock('2026-01-01T00:00:00.000Z');
  const log = createLogger('audit-bench', 'warn');
  const options = {
    grpcAddr: '127.0.0.1:0', credentials: [], currencies: ['USD'], batchSizeMax: 256, queueLengthMax: 100_000,
    holdTtlMsDefault: 60_000, holdTtlMsMax: 3_600_000, holdSweepPeriodMs: 1_000, holdSweepBatchMax: 500,
    expirySweepPeriodMs: 10_000, expirySweepBatchMax: 500, drainGraceMs: 1_000, streamsMax: 64,
    holdLifetimeMsMax: 21_600_000, healthCheckPeriodMs: 1_000, writerStuckMs: 60_000, clockSkewMsMax: 0,
  };
  const ledger = await Ledger.create({ pool, writePool, clock, log, options });
  const ctx = { currencies: new Set(['USD']), holdTtlMsDefault: 60_000, holdTtlMsMax: 3_600_000, holdLifetimeMsMax: 21_600_000 };
  const submit = (command: Command) =>
    ledger.queue.submit({ command, requestHash: requestHash(command), actor: 'audit-bench', deadlineMs: Infinity });
  const started = performance.now();
  let written = 0;
  const report = () => process.stderr.write(`\rbuilding ${name}: ${written}/${entries} entries, ${Math.round(written / ((performance.now() - started) / 1000))}/s   `);
  // A bounded window of commands in flight: a counter and one waiter, not Promise.race over
  // thousands of promises (which is quadratic).
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const settled = () => {
    inFlight--;
    const w = wake;
    wake = null;
    w?.();
  };
  const push = async (p: Promise<unknown>) => {
    inFlight++;
    void p.then(settled, (error: unknown) => {
      settled();
      console.error(error);
      process.exit(1);
    });
    while (inFlight >= 4_096) await new Promise<void>((resolve) => (wake = resolve));
  };
  const drain = async () => {
    while (inFlight > 0) await new Promise<void>((resolve) => (wake = resolve));
  };
  for (let u = 0; u < users && written < entries; u++) {
    await push(submit(parsePurchase({
      idempotencyKey: `p-${u}`, userId: `user-${u}`, credits: 1_000_000n, bucket: 'PURCHASED', amountMicros: 299_990_000n,
      currency: 'USD', externalRef: `pi_bench_${u}`, priority: 0,
    }, ctx)).then(() => void written++));
  }
  await drain();
  let i = 0;
  const upstream = { amountMicros: 1_234n, currency: 'USD', requestId: '', model: 'upscaler-4x' };
  while (written < entries) {
    const userId = `user-${i % users}`;
    if (i % 10 === 9 && entries - written >= 2) {
      const n = i;
      await push(
        submit(parseReserve({ idempotencyKey: `r-${n}`, userId, credits: 2n, ttlMs: 0n }, ctx)).then(async (r) => {
          written++;
          await submit(parseCapture({ idempotencyKey: `c-${n}`, holdId: r.holdId!, credits: 1n, upstream: { ...upstream, requestId: `pred-${n}` } }, ctx));
          written++;
        }),
      );
      i++;
      // Commands in flight land later: stop short of the target and let them.
      if (written + inFlight * 2 >= entries) await drain();
      continue;
    }
    await push(submit(parseConsume({ idempotencyKey: `u-${i}`, userId, credits: 1n, upstream: { ...upstream, requestId: `pred-${i}` } }, ctx)).then(() => void written++));
    i++;
    if (written + inFlight * 2 >= entries) await drain();
    if (i % 10_000 === 0) {
      report();
      clock.advance(1_000);
    }
  }
  await drain();
  report();
  process.stderr.write('\n');
  await ledger.stop();
  await pool.end();
  await writePool.end();
  // Inputs: none. Output: none. Fresh statistics, as a database that has been running would have.
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('VACUUM ANALYZE');
  await c.end();
}

async function main(): Promise<void> {
  const exists = await admin(async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1);
  if (!exists || args.rebuild || (await headSeq().catch(() => 0)) < entries) await build();
  const head = await headSeq();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const rounds: { seconds: number; entriesPerSecond: number; nodeCpuSeconds: number; postgresCpuSeconds: number | null; rssMaxMiB: number }[] = [];
  for (let r = 0; r < Number(args.rounds); r++) {
    let rssMax = 0;
    const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 50);
    const backends = new PostgresCpu(pool);
    await backends.sample();
    const pgSampler = setInterval(() => void backends.sample(), 200);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const report = await verifyJournal(pool, {
      pageSize: Number(args['page-size']),
      onProgress: (p) => {
        if (p.entries % 100_000 < Number(args['page-size'])) process.stderr.write(`\rverify: ${p.checkedSeq}/${p.toSeq}   `);
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    clearInterval(pgSampler);
    await backends.sample();
    clearInterval(sampler);
    process.stderr.write('\n');
    if (report.violations.length > 0) throw new Error(`the bench journal does not verify: ${report.violations.slice(0, 3).join('; ')}`);
    rounds.push({
      seconds,
      entriesPerSecond: Math.round(report.entries / seconds),
      nodeCpuSeconds: (cpu.user + cpu.system) / 1e6,
      postgresCpuSeconds: backends.seconds(),
      rssMaxMiB: Math.round(rssMax / 2 ** 20),
    });
    const last = rounds.at(-1)!;
    console.log(
      `round ${r + 1}: ${report.entries} entries (${report.transfers} transfers, ${report.accounts} accounts) in ${seconds.toFixed(2)} s = ` +
        `${last.entriesPerSecond} entries/s; CPU per entry: node ${((last.nodeCpuSeconds / report.entries) * 1e6).toFixed(1)} µs, ` +
        `PostgreSQL ${last.postgresCpuSeconds === null ? '?' : ((last.postgresCpuSeconds / report.entries) * 1e6).toFixed(1)} µs; max RSS ${last.rssMaxMiB} MiB; ` +
        `load average ${os.loadavg()[0]!.toFixed(1)}`,
    );
  }
  await pool.end();
  const best = rounds.reduce((a, b) => (b.entriesPerSecond > a.entriesPerSecond ? b : a));
  const result = {
    date: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30) },
    node: process.version, entries: head, pageSize: Number(args['page-size']), rounds, best, target: 200_000, met: best.entriesPerSecond >= 200_000,
  };
  console.log(`best: ${best.entriesPerSecond} entries/s (target 200000: ${result.met ? 'met' : 'NOT met'})`);
  if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
  if (args.drop) await admin(async (c) => void (await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)));
}

/**
 * CPU used by this database's PostgreSQL backends (from /proc, when the server runs on this
 * machine): sampled every 200 ms, so a backend that exits (the walk's own connection) counts
 * with its last sample; a few hundredths of a second may be missed.
 */
class PostgresCpu {
  readonly #first = new Map<number, number>();
  readonly #last = new Map<number, number>();
  #failed = false;
  #started = false;
  constructor(private readonly pool: pg.Pool) {}
  async sample(): Promise<void> {
    try {
      const { rows } = await this.pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database()');
      for (const { pid } of rows) {
        let stat: string;
        try {
          stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        } catch {
          continue;
        }
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const ticks = Number(fields[11]) + Number(fields[12]);
        // Backends there before the window count from their first sample; newer ones from 0.
        if (!this.#first.has(pid)) this.#first.set(pid, this.#started ? 0 : ticks);
        this.#last.set(pid, ticks);
      }
      this.#started = true;
    } catch {
      this.#failed = true;
    }
  }
  seconds(): number | null {
    if (this.#failed) return null;
    let ticks = 0;
    for (const [pid, last] of this.#last) ticks += last - (this.#first.get(pid) ?? 0);
    return ticks / 100;
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
