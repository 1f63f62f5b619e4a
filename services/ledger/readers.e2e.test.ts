import { status, type ServiceError } from '@grpc/grpc-js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultDbTimeouts } from '../lib/db.js';
import { Bucket, createLedgerClient, type LedgerClient } from './client/index.js';
import { settle } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

// Readers must not starve writers (issue 7): StreamJournal followers, ListEntries and the audit
// reads run on a readers' pool of their own, with a statement timeout; the sweepers and the
// health probe have their own pool; writes have theirs; and StreamJournal calls are capped per
// process. These tests check the structure (what completes while readers are open or stuck,
// what is refused, what is freed), never rates: those are the bench's (consume_with_readers).

const STREAMS_MAX = 50;
const USERS = 4;
const SLOW_READER_PAUSE_MS = 20;

async function until(what: string, deadlineMs: number, probe: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A StreamJournal follower that reads slowly: `paused` ones take their first entry and then
 * stop reading (the server's writes wait for them), the others take one entry every
 * SLOW_READER_PAUSE_MS. Each has its own channel, as separate auditing processes would.
 */
interface SlowReader {
  /** Resolves once the first entry arrived: the server's handler runs, in a slot. */
  started: Promise<void>;
  /** How the stream ended: 'cancelled' when we ended it, else the status code name. */
  ended: Promise<string>;
  entries(): number;
  cancel(): void;
}

function slowReader(address: string, token: string, paused: boolean): SlowReader {
  const client = createLedgerClient(address, token, { 'grpc.use_local_subchannel_pool': 1 });
  const abort = new AbortController();
  let count = 0;
  let markStarted!: () => void;
  const started = new Promise<void>((r) => (markStarted = r));
  const aborted = new Promise<void>((r) => abort.signal.addEventListener('abort', () => r()));
  const ended = (async () => {
    try {
      for await (const _entry of client.streamJournal(1n, abort.signal)) {
        count += 1;
        markStarted();
        if (paused) await aborted;
        else await Promise.race([aborted, new Promise((r) => setTimeout(r, SLOW_READER_PAUSE_MS))]);
        if (abort.signal.aborted) break;
      }
      return abort.signal.aborted ? 'cancelled' : 'ended';
    } catch (error) {
      return status[(error as ServiceError).code] ?? 'unknown';
    } finally {
      markStarted();
      client.close();
    }
  })();
  return { started, ended, entries: () => count, cancel: () => abort.abort() };
}

/** The first message or the error of a stream, then cancels it. */
async function firstOfStream(client: LedgerClient, fromEntryId = 1n): Promise<{ ok: true } | { ok: false; code: status; details: string }> {
  const abort = new AbortController();
  try {
    for await (const _entry of client.streamJournal(fromEntryId, abort.signal)) return { ok: true };
    return { ok: true };
  } catch (error) {
    const e = error as ServiceError;
    return { ok: false, code: e.code, details: e.details };
  } finally {
    abort.abort();
  }
}

/** `lanes` callers each sending `perLane` Consumes of one credit, spread over the users. */
async function consumeStorm(t: TestLedger, tag: string, lanes: number, perLane: number) {
  const lane = async (l: number) => {
    const outcomes = [];
    for (let i = 0; i < perLane; i += 1) {
      outcomes.push(
        await settle(
          t.client.worker.consume({ idempotencyKey: `${tag}-${l}-${i}`, userId: `reader-u${(l + i) % USERS}`, credits: 1n }, { timeoutMs: 30_000 }),
        ),
      );
    }
    return outcomes;
  };
  return (await Promise.all(Array.from({ length: lanes }, (_, l) => lane(l)))).flat();
}

function expectAllWritten(outcomes: Awaited<ReturnType<typeof consumeStorm>>, count: number): void {
  const failures = outcomes.filter((o) => !o.ok).map((o) => (o.ok ? '' : `${status[o.error.code]}: ${o.error.details}`));
  expect(failures).toEqual([]);
  const ids = new Set(outcomes.map((o) => (o.ok ? o.value.entryId : 0n)));
  expect(ids.size).toBe(count);
  expect(ids.has(0n)).toBe(false);
}

describe('StreamJournal readers during a Consume storm', () => {
  let t: TestLedger;
  let auditorToken: string;
  const readers: SlowReader[] = [];
  beforeAll(async () => {
    t = await startTestLedger({
      options: { streamsMax: STREAMS_MAX },
      // A small readers' pool makes the readers contend for it; a generous wait for a pool
      // connection lets the test hold that pool for a while without failing the readers.
      readPoolSize: 2,
      timeouts: { ...defaultDbTimeouts, connectTimeoutMs: 30_000 },
    });
    auditorToken = t.options.credentials.find((c) => c.role === 'auditor')!.token;
    for (let u = 0; u < USERS; u += 1) {
      await t.client.admin.grant({ idempotencyKey: `seed-${u}`, userId: `reader-u${u}`, credits: 1_000_000n, bucket: Bucket.BUCKET_BONUS });
    }
  });
  afterAll(async () => {
    for (const r of readers) r.cancel();
    await Promise.all(readers.map((r) => r.ended));
    await t?.close();
  });

  it('every Consume completes while 50 slow readers are open; the 51st stream is RESOURCE_EXHAUSTED; cancelled streams free their slots', async () => {
    for (let i = 0; i < STREAMS_MAX; i += 1) readers.push(slowReader(t.address, auditorToken, i % 2 === 0));
    await Promise.all(readers.map((r) => r.started));
    expect(readers.every((r) => r.entries() > 0)).toBe(true);
    expect(t.ledger.streams.open).toBe(STREAMS_MAX);

    // The cap: one stream more is refused at once, naming the limit.
    const extra = createLedgerClient(t.address, auditorToken, { 'grpc.use_local_subchannel_pool': 1 });
    try {
      const refused = await firstOfStream(extra);
      expect(refused).toMatchObject({ ok: false, code: status.RESOURCE_EXHAUSTED });
      expect(refused.ok ? '' : refused.details).toMatch(/already serves 50 StreamJournal calls \(LEDGER_STREAMS_MAX\)/);

      // The storm, with the sweepers and the health probe running beside it.
      const storm = consumeStorm(t, 'storm', 16, 25);
      const background = (async () => {
        let passes = 0;
        const started = Date.now();
        // At least three passes, then as many as fit while the storm runs (bounded).
        while (passes < 3 || (t.ledger.queue.length > 0 && Date.now() - started < 20_000)) {
          await t.ledger.sweeper.sweepOnce();
          await t.ledger.expirySweeper.sweepOnce();
          await t.ledger.health.checkOnce();
          expect([...t.ledger.health.problems.keys()]).toEqual([]);
          passes += 1;
        }
        return passes;
      })();
      const outcomes = await storm;
      expect(await background).toBeGreaterThanOrEqual(3);
      expectAllWritten(outcomes, 16 * 25);
      // The readers were open all along (none failed or ended), and the slow ones kept reading.
      expect(t.ledger.streams.open).toBe(STREAMS_MAX);
      const slowOnes = readers.filter((_, i) => i % 2 === 1);
      const before = slowOnes.map((r) => r.entries());
      await until('the slow readers read on', 10_000, () => slowOnes.every((r, i) => r.entries() > before[i]!));

      // Cancelling frees the slots: the server's handlers end, and new streams are accepted.
      const cancelled = readers.splice(0, 10);
      for (const r of cancelled) r.cancel();
      expect(await Promise.all(cancelled.map((r) => r.ended))).toEqual(Array(10).fill('cancelled'));
      await until('the cancelled streams release their slots', 5_000, () => t.ledger.streams.open === STREAMS_MAX - 10);
      const replacements = Array.from({ length: 10 }, () => slowReader(t.address, auditorToken, true));
      readers.push(...replacements);
      await Promise.all(replacements.map((r) => r.started));
      expect(replacements.every((r) => r.entries() > 0)).toBe(true);
      expect(t.ledger.streams.open).toBe(STREAMS_MAX);
      // Full again: the cap still holds.
      expect(await firstOfStream(extra)).toMatchObject({ ok: false, code: status.RESOURCE_EXHAUSTED });
    } finally {
      extra.close();
    }
    await t.expectInvariants();
  });

  it("writes, sweeps, the health probe and GetBalance go on while the readers' pool is taken", async () => {
    // Every connection of the readers' pool held: the 50 followers' polls and any ListEntries
    // queue for it; nothing else may.
    const held = await Promise.all(Array.from({ length: 2 }, () => t.readPool.connect()));
    let listed: ReturnType<typeof settle<unknown>> | null = null;
    try {
      expect(t.readPool.totalCount).toBe(2);
      expect(t.readPool.idleCount).toBe(0);
      listed = settle(t.client.auditor.listEntries({ userId: 'reader-u0', pageSize: 10 }, { timeoutMs: 30_000 }));
      const outcomes = await consumeStorm(t, 'held', 8, 10);
      expectAllWritten(outcomes, 80);
      await t.ledger.sweeper.sweepOnce();
      await t.ledger.expirySweeper.sweepOnce();
      await t.ledger.health.checkOnce();
      expect([...t.ledger.health.problems.keys()]).toEqual([]);
      expect((await t.client.worker.getBalance({ userId: 'reader-u0' }, { timeoutMs: 10_000 })).userId).toBe('reader-u0');
      // The read is still waiting for a readers' connection.
      expect(await Promise.race([listed.then(() => 'answered'), new Promise((r) => setTimeout(() => r('waiting'), 100))])).toBe('waiting');
    } finally {
      for (const c of held) c.release();
    }
    const answer = await listed;
    expect(answer.ok).toBe(true);
    expect(t.ledger.streams.open).toBe(STREAMS_MAX);
    await t.expectInvariants();
  });
});

describe('a journal read past the read statement timeout', () => {
  let t: TestLedger;
  let admin: pg.Pool;
  beforeAll(async () => {
    t = await startTestLedger({ readStatementTimeoutMs: 200 });
    admin = new pg.Pool({ connectionString: t.db.url, max: 1 });
    admin.on('error', () => {});
    await t.client.admin.grant({ idempotencyKey: 'seed', userId: 'slow-u', credits: 100n, bucket: Bucket.BUCKET_BONUS });
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  it('is DEADLINE_EXCEEDED naming the timeout, for ListEntries and StreamJournal, and the stream frees its slot', async () => {
    // A read that cannot finish: the journal is locked against readers (as a long migration
    // would), so the readers' statements wait until their statement timeout cancels them.
    // lock_timeout (5 s) is longer, so the statement timeout is what ends them.
    const blocker = await admin.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE entries IN ACCESS EXCLUSIVE MODE');
      const from = new Date(t.clock.now().getTime() - 86_400_000);
      const listed = await settle(t.client.auditor.listEntries({ recordedFrom: from, pageSize: 10 }, { timeoutMs: 10_000 }));
      expect(listed.ok).toBe(false);
      if (!listed.ok) {
        expect(status[listed.error.code]).toBe('DEADLINE_EXCEEDED');
        expect(listed.error.details).toMatch(/read statement timeout \(200 ms, LEDGER_DB_READ_STATEMENT_TIMEOUT_MS\)/);
      }
      const streamed = await firstOfStream(t.client.auditor);
      expect(streamed).toMatchObject({ ok: false, code: status.DEADLINE_EXCEEDED });
      expect(streamed.ok ? '' : streamed.details).toMatch(/read statement timeout \(200 ms/);
      const got = await settle(t.client.auditor.getEntry({ entryId: 1n }, { timeoutMs: 10_000 }));
      expect(got.ok ? 'OK' : status[got.error.code]).toBe('DEADLINE_EXCEEDED');
      expect(t.ledger.streams.open).toBe(0);
      // GetBalance does not read the journal table and is not on the readers' pool.
      expect((await t.client.worker.getBalance({ userId: 'slow-u' }, { timeoutMs: 10_000 })).available).toBe(100n);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    expect(await firstOfStream(t.client.auditor)).toEqual({ ok: true });
    await t.expectInvariants();
  });
});
