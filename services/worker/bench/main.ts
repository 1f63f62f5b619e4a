// `npm run bench:worker [-- --concurrency 50,200 --latency-ms 2000 --jobs-per-slot 8 --json FILE]`
//
// The worker alone under load: a real ledger process (fresh database cloned from the migrated
// template), the Wavespeed simulator at a fixed latency, and the worker's main.ts as a child
// process, once per concurrency. For each run it prints jobs/s, the worker's CPU per job (from
// /proc/<pid>/stat), ledger calls per job (from the worker's own /metrics) and enqueue → charge
// latency (BullMQ's job timestamp → finishedOn, which is after the capture) p50/p99.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Bucket, createLedgerClient } from '../../ledger/client/index.js';
import { createTestDatabase, prepareTemplate } from '../../testing/test-db.js';
import type { EnhancementRequest } from '../job-types.js';
import { createEnhancementQueue } from '../producer.js';
import { startChild, type Child } from '../../testing/child-process.js';
import { startSimulatorChild } from '../testing/simulator-child.js';
import { redisUrl } from '../testing/worker-harness.js';

const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '50,200' },
    'latency-ms': { type: 'string', default: '2000' },
    'jobs-per-slot': { type: 'string', default: '8' },
    users: { type: 'string', default: '200' },
    'poll-interval-ms': { type: 'string', default: '1000' },
    json: { type: 'string' },
    // Write a V8 CPU profile of each worker run into this directory.
    profile: { type: 'string' },
  },
});
const concurrencies = values.concurrency.split(',').map(Number);
const latencyMs = Number(values['latency-ms']);
const jobsPerSlot = Number(values['jobs-per-slot']);
const userCount = Number(values.users);
const model = 'wavespeed-ai/image-upscaler';

/** User + system CPU of a process so far, in ms (Linux /proc). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return (ticks * 1000) / 100; // CLK_TCK is 100 on Linux
}

async function metricSum(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function main() {
  await prepareTemplate();
  const db = await createTestDatabase();
  const token = (role: string) => `${role}-bench-${randomBytes(12).toString('hex')}`;
  const credentials = [
    { name: 'admin-bench', token: token('admin'), role: 'admin' },
    { name: 'worker-bench', token: token('worker'), role: 'worker' },
  ];
  const children: Child[] = [];
  const sim = await startSimulatorChild({ latencyMs });
  let ledgerChild: Child | null = null;
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const results: Record<string, unknown>[] = [];
  try {
    ledgerChild = await startChild('services/ledger/main.ts', {
      DATABASE_URL: db.url,
      LEDGER_GRPC_ADDR: '127.0.0.1:0',
      LEDGER_CREDENTIALS: JSON.stringify(credentials),
      LOG_LEVEL: 'warn',
    });
    const ledgerAddress = `127.0.0.1:${ledgerChild.ready.port as number}`;
    const admin = createLedgerClient(ledgerAddress, credentials[0]!.token);
    const users = Array.from({ length: userCount }, (_, i) => `bench-user-${i}`);
    await Promise.all(users.map((userId) => admin.grant({ idempotencyKey: `bench-grant-${userId}`, userId, credits: 1_000_000n, bucket: Bucket.BUCKET_PURCHASED })));
    admin.close();

    for (const concurrency of concurrencies) {
      const prefix = `bench-worker-${randomBytes(4).toString('hex')}`;
      const worker = await startChild('services/worker/main.ts', {
        REDIS_URL: redisUrl,
        LEDGER_ADDR: ledgerAddress,
        LEDGER_TOKEN: credentials[1]!.token,
        WAVESPEED_API_KEY: sim.apiKey,
        WAVESPEED_BASE_URL: sim.url,
        WORKER_QUEUE_PREFIX: prefix,
        WORKER_METRICS_ADDR: '127.0.0.1:0',
        WORKER_CONCURRENCY: String(concurrency),
        WAVESPEED_POLL_INTERVAL_MS: values['poll-interval-ms'],
        LOG_LEVEL: 'warn',
      }, 30_000, values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : []);
      children.push(worker);
      const metricsPort = worker.ready.metricsPort as number;
      const queue = createEnhancementQueue(redis, prefix);
      const jobs = concurrency * jobsPerSlot;
      const requests: EnhancementRequest[] = Array.from({ length: jobs }, (_, i) => ({
        requestId: `${prefix}-${i}`,
        userId: users[i % users.length]!,
        model,
        input: { image: `https://img.example/${prefix}/${i}.png`, target_resolution: '4k' },
      }));
      // Warm-up (not measured): one round of jobs, so lazy module loading and JIT compilation
      // are out of the figures, which are meant as the steady state.
      const warmPrefix = `${prefix}-warm`;
      await queue.addBulk(
        Array.from({ length: concurrency }, (_, i) => ({
          name: 'enhance',
          data: { requestId: `${warmPrefix}-${i}`, userId: users[i % users.length]!, model, input: { image: `https://img.example/${warmPrefix}/${i}.png` } },
          opts: { jobId: `${warmPrefix}-${i}`, removeOnComplete: true, removeOnFail: true },
        })),
      );
      for (;;) {
        const c = await queue.getJobCounts('wait', 'active', 'delayed');
        if ((c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const ledgerBefore = await metricSum(metricsPort, 'enhancement_ledger_calls_total');
      const cpuBefore = cpuMs(worker.pid);
      const started = Date.now();
      for (let i = 0; i < requests.length; i += 500) {
        await queue.addBulk(requests.slice(i, i + 500).map((r) => ({ name: 'enhance', data: r, opts: { jobId: r.requestId } })));
      }
      // Wait for every job to finish (completed count from BullMQ).
      for (;;) {
        const counts = await queue.getJobCounts('completed', 'failed');
        if ((counts.completed ?? 0) + (counts.failed ?? 0) >= jobs) break;
        if (Date.now() - started > 600_000) throw new Error(`run at concurrency ${concurrency} did not finish in 10 minutes`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const cpuAfter = cpuMs(worker.pid);
      const ledgerAfter = await metricSum(metricsPort, 'enhancement_ledger_calls_total');
      const finished = await queue.getJobs(['completed', 'failed'], 0, jobs);
      const failed = finished.filter((j) => j.failedReason !== undefined).length;
      const latencies = finished.map((j) => j.finishedOn! - j.timestamp).sort((a, b) => a - b);
      const inWorker = finished.map((j) => j.finishedOn! - (j.processedOn ?? j.timestamp)).sort((a, b) => a - b);
      const firstStart = Math.min(...finished.map((j) => j.processedOn ?? j.timestamp));
      const lastFinish = Math.max(...finished.map((j) => j.finishedOn!));
      const row = {
        concurrency,
        jobs,
        failed,
        upstreamLatencyMs: latencyMs,
        jobsPerSecond: Number(((jobs * 1000) / (lastFinish - firstStart)).toFixed(1)),
        workerCpuMsPerJob: Number(((cpuAfter - cpuBefore) / jobs).toFixed(3)),
        ledgerCallsPerJob: Number(((ledgerAfter - ledgerBefore) / jobs).toFixed(2)),
        enqueueToChargeP50Ms: percentile(latencies, 50),
        enqueueToChargeP99Ms: percentile(latencies, 99),
        // From the (last) start of processing to the charge: the queue wait left out.
        processToChargeP50Ms: percentile(inWorker, 50),
        processToChargeP99Ms: percentile(inWorker, 99),
      };
      results.push(row);
      console.log(JSON.stringify(row));
      await worker.stop();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  } finally {
    for (const c of children) await c.kill();
    await ledgerChild?.stop();
    await sim.stop();
    redis.disconnect();
    await db.drop();
  }
  console.log('\nconcurrency  jobs  failed  jobs/s  worker CPU ms/job  ledger calls/job  enqueue→charge p50  p99  (start→charge p50  p99)');
  for (const r of results as Record<string, number>[]) {
    console.log(
      `${String(r.concurrency).padStart(11)}  ${String(r.jobs).padStart(4)}  ${String(r.failed).padStart(6)}  ${String(r.jobsPerSecond).padStart(6)}  ${String(r.workerCpuMsPerJob).padStart(17)}  ${String(r.ledgerCallsPerJob).padStart(16)}  ${String(r.enqueueToChargeP50Ms).padStart(15)} ms  ${r.enqueueToChargeP99Ms} ms  (${r.processToChargeP50Ms} ms  ${r.processToChargeP99Ms} ms)`,
    );
  }
  if (values.json) writeFileSync(values.json, JSON.stringify({ machine: { cpus: 2, note: 'shared' }, latencyMs, results }, null, 2));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
