import { status, type ServiceError } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, EntryKind } from '../generated/proto/credits/ledger/v1/ledger.js';
import { killChildLedgers, startChildLedger, type ChildLedger } from './testing/child-ledger.js';
import { testCredentials } from './testing/ledger-harness.js';
import { createTestDatabase, type TestDatabase } from '../testing/test-db.js';
import { verifyJournal } from './audit/verify-journal.js';
import { createLedgerClient, type LedgerClient } from './client/index.js';
import { errorReason } from './client/index.js';

// kill -9 of a ledger process in the middle of a write storm (ledger README §4, §5): every write
// that was acknowledged survives, unacknowledged ones are all-or-nothing, and retrying them
// with their keys never applies them twice.

// pg-pool's end() resolves before its connections have closed, so the DROP DATABASE … WITH (FORCE)
// that follows in the harness's close() can terminate a closing connection, and the pool re-emits
// that error; with no listener it would be an uncaught exception. Tests listen for it.
const quiet = <P extends { on(event: 'error', listener: () => void): unknown }>(pool: P): P => {
  pool.on('error', () => {});
  return pool;
};

type Method = 'grant' | 'consume' | 'reserve' | 'capture';

interface Call {
  method: Method;
  key: string;
  userId: string;
  request: Record<string, unknown>;
  /** pending: no answer yet; acked: the ledger answered OK; failed: it answered with an error. */
  state: 'pending' | 'acked' | 'failed';
  response?: Record<string, unknown> & { entryId: bigint; replayed: boolean };
  error?: ServiceError;
  failedBeforeKill?: boolean;
}

const expectedKind: Record<Method, EntryKind> = {
  grant: EntryKind.ENTRY_KIND_GRANT,
  consume: EntryKind.ENTRY_KIND_CONSUME,
  reserve: EntryKind.ENTRY_KIND_RESERVE,
  capture: EntryKind.ENTRY_KIND_CAPTURE,
};

const CLIENTS = 50;
const USERS = 10;
const ROUNDS_MAX = 60;
const ACKS_BEFORE_KILL = 400;

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!);
      }
    }),
  );
  return results;
}

describe('crash: kill -9 mid-stream, restart on the same database', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  const credentials = testCredentials();
  const token = (role: string) => credentials.find((c) => c.role === role)!.token;
  const actorOf = (role: string) => credentials.find((c) => c.role === role)!.name;
  const opened: LedgerClient[] = [];
  const clientsFor = (address: string, role: string, n: number) =>
    Array.from({ length: n }, () => {
      // A channel of its own each, so the storm really uses several connections.
      const c = createLedgerClient(address, token(role), { 'grpc.use_local_subchannel_pool': 1 });
      opened.push(c);
      return c;
    });

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = quiet(new pg.Pool({ connectionString: db.url, max: 4 }));
  });
  afterAll(async () => {
    for (const c of opened) c.close();
    await killChildLedgers();
    await pool?.end();
    await db?.drop();
  });

  it('keeps every acknowledged write, and retries never double-apply', async () => {
    let child: ChildLedger = await startChildLedger({ databaseUrl: db.url, credentials });
    const admins = clientsFor(child.address, 'admin', 5);
    const workers = clientsFor(child.address, 'worker', 10);
    const calls: Call[] = [];
    let acked = 0;
    let killed = false;
    let reachedTarget!: () => void;
    const target = new Promise<void>((resolve) => (reachedTarget = resolve));

    const send = async (c: Call, client: LedgerClient): Promise<boolean> => {
      calls.push(c);
      try {
        const fn = client[c.method] as unknown as (r: unknown, o: unknown) => Promise<Call['response']>;
        c.response = await fn(c.request, { timeoutMs: 15_000 });
        c.state = 'acked';
        acked += 1;
        if (acked >= ACKS_BEFORE_KILL) reachedTarget();
        return true;
      } catch (error) {
        c.state = 'failed';
        c.error = error as ServiceError;
        c.failedBeforeKill = !killed;
        return false;
      }
    };

    const clientLoop = async (i: number) => {
      const userId = `crash-u${i % USERS}`;
      const admin = admins[i % admins.length]!;
      const worker = workers[i % workers.length]!;
      for (let round = 0; round < ROUNDS_MAX; round += 1) {
        const k = `c${i}-r${round}`;
        const base = { method: 'grant' as Method, userId, state: 'pending' as const };
        if (!(await send({ ...base, key: `${k}-grant`, request: { idempotencyKey: `${k}-grant`, userId, credits: 10n, bucket: Bucket.BUCKET_BONUS } }, admin))) return;
        if (!(await send({ ...base, method: 'consume', key: `${k}-consume`, request: { idempotencyKey: `${k}-consume`, userId, credits: 2n } }, worker))) return;
        const reserve: Call = { ...base, method: 'reserve', key: `${k}-reserve`, request: { idempotencyKey: `${k}-reserve`, userId, credits: 3n } };
        if (!(await send(reserve, worker))) return;
        // Every other round leaves the hold open.
        if (round % 2 === 0) {
          const holdId = reserve.response!.holdId as string;
          const capture = { idempotencyKey: `${k}-capture`, holdId, credits: 2n, upstream: { amountMicros: 1_000n, currency: 'USD', requestId: `pred-${k}`, model: 'm' } };
          if (!(await send({ ...base, method: 'capture', key: `${k}-capture`, request: capture }, worker))) return;
        }
      }
    };

    const storm = Promise.all(Array.from({ length: CLIENTS }, (_, i) => clientLoop(i)));
    await Promise.race([target, storm, new Promise((r) => setTimeout(r, 20_000))]);
    expect(acked).toBeGreaterThanOrEqual(ACKS_BEFORE_KILL);
    // Kill at an arbitrary point of the batch pipeline, not right when a batch was answered.
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 25)));
    killed = true;
    const inFlightAtKill = calls.filter((c) => c.state === 'pending').length;
    const exit = await child.kill();
    expect(exit.signal).toBe('SIGKILL');
    await storm;

    // Nothing failed while the ledger was up; after the kill every call finished (no hangs).
    expect(calls.filter((c) => c.failedBeforeKill).map((c) => `${c.key}: ${c.error?.code} ${c.error?.details}`)).toEqual([]);
    expect(calls.filter((c) => c.state === 'pending')).toEqual([]);
    const unacked = calls.filter((c) => c.state === 'failed');
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(unacked.length).toBeGreaterThan(0);
    for (const c of unacked) expect([status.UNAVAILABLE, status.CANCELLED]).toContain(c.error!.code);

    // The crashed process's sessions must be gone before the restart (its locks with them).
    for (let i = 0; ; i += 1) {
      const { rows } = await pool.query(
        `SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'credit-ledger'`,
        [db.name],
      );
      if (rows[0].n === 0) break;
      if (i >= 100) throw new Error(`crashed ledger's database sessions still open: ${rows[0].n}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // Which unacknowledged writes made it (committed but unanswered)?
    const stored = new Map<string, bigint>();
    {
      const { rows } = await pool.query<{ idempotency_key: string; seq: string }>(
        'SELECT idempotency_key, seq::text FROM entries WHERE idempotency_key = ANY($1::text[])',
        [calls.map((c) => c.key)],
      );
      for (const r of rows) stored.set(r.idempotency_key, BigInt(r.seq));
    }

    child = await startChildLedger({ databaseUrl: db.url, credentials });
    const auditor = clientsFor(child.address, 'auditor', 1)[0]!;
    const admin2 = clientsFor(child.address, 'admin', 1)[0]!;
    const worker2 = clientsFor(child.address, 'worker', 1)[0]!;
    const clientOf = (m: Method) => (m === 'grant' ? admin2 : worker2);
    const call = (c: Call) => (clientOf(c.method)[c.method] as unknown as (r: unknown) => Promise<Call['response']>)(c.request);

    // Every acknowledged write is in the journal, under its key, and replays to the same result.
    const ackedCalls = calls.filter((c) => c.state === 'acked');
    const problems: string[] = [];
    await mapLimit(ackedCalls, 16, async (c) => {
      if (stored.get(c.key) !== c.response!.entryId) {
        problems.push(`${c.key}: acknowledged as entry ${c.response!.entryId}, journal has ${stored.get(c.key)}`);
        return;
      }
      const { entry } = await auditor.getEntry({ entryId: c.response!.entryId });
      if (
        entry?.idempotencyKey !== c.key ||
        entry.kind !== expectedKind[c.method] ||
        entry.userId !== c.userId ||
        entry.actor !== actorOf(c.method === 'grant' ? 'admin' : 'worker')
      ) {
        problems.push(`${c.key}: GetEntry returned ${entry?.idempotencyKey}/${entry?.kind}/${entry?.userId}/${entry?.actor}`);
      }
      const replay = await call(c);
      if (JSON.stringify({ ...replay, replayed: true }, big) !== JSON.stringify({ ...c.response, replayed: true }, big) || !replay!.replayed) {
        problems.push(`${c.key}: replay ${JSON.stringify(replay, big)} differs from ${JSON.stringify(c.response, big)}`);
      }
    });
    expect(problems).toEqual([]);

    // Unacknowledged writes: retried with the same key and request. One already in the journal
    // replays its stored entry; one that is not is applied now, once.
    const order: Method[] = ['grant', 'reserve', 'consume', 'capture'];
    const retries = [...unacked].sort((a, b) => order.indexOf(a.method) - order.indexOf(b.method));
    let replayedRetries = 0;
    for (const c of retries) {
      let r: Call['response'];
      try {
        r = await call(c);
      } catch (error) {
        const e = error as ServiceError;
        problems.push(`${c.key}: retry failed ${status[e.code]} ${errorReason(e) ?? ''} ${e.details}`);
        continue;
      }
      const before = stored.get(c.key);
      if (before !== undefined) {
        replayedRetries += 1;
        if (!r!.replayed || r!.entryId !== before) problems.push(`${c.key}: in the journal as ${before}, retry gave ${r!.entryId} replayed=${r!.replayed}`);
      } else if (r!.replayed) {
        problems.push(`${c.key}: not in the journal before the retry, yet the retry was a replay of ${r!.entryId}`);
      }
      c.response = r!;
      c.state = 'acked';
    }
    expect(problems).toEqual([]);
    // And once more: now every retried key replays.
    for (const c of retries) {
      const again = await call(c);
      expect({ key: c.key, entryId: again!.entryId, replayed: again!.replayed }).toEqual({ key: c.key, entryId: c.response!.entryId, replayed: true });
    }

    // The journal holds each call exactly once and nothing else.
    const { rows: counts } = await pool.query<{ n: number; keys: number }>(
      'SELECT COUNT(*)::int AS n, COUNT(DISTINCT idempotency_key)::int AS keys FROM entries',
    );
    expect(counts[0]).toEqual({ n: calls.length, keys: calls.length });

    // Balances follow from the calls alone: a double application would show here.
    const model = new Map<string, { balance: bigint; held: bigint }>();
    const captured = new Set(calls.filter((c) => c.method === 'capture').map((c) => c.request.holdId as string));
    for (const c of calls) {
      const m = model.get(c.userId) ?? { balance: 0n, held: 0n };
      if (c.method === 'grant') m.balance += 10n;
      if (c.method === 'consume') m.balance -= 2n;
      if (c.method === 'capture') m.balance -= 2n;
      if (c.method === 'reserve' && !captured.has(c.response!.holdId as string)) m.held += 3n;
      model.set(c.userId, m);
    }
    for (const [userId, want] of model) {
      const b = await auditor.getBalance({ userId });
      expect({ userId, balance: b.balance, held: b.held }).toEqual({ userId, ...want });
    }

    const report = await verifyJournal(pool, { now: new Date(), holdSweepPeriodMs: 1_000 });
    expect(report.violations).toEqual([]);
    expect(report.entries).toBe(calls.length);
    // Informational: how the crash split the calls.
    console.info(
      `crash: ${calls.length} calls, ${ackedCalls.length} acknowledged, ${unacked.length} unacknowledged ` +
        `(${replayedRetries} of them had been committed; codes ${[...new Set(unacked.map((c) => status[c.error!.code]))].join(',')})`,
    );
    expect(await child.stop()).toEqual({ code: 0, signal: null });
  });
});

function big(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Date) return value.toISOString();
  return value;
}
