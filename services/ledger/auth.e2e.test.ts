import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as pb from '../generated/proto/credits/ledger/v1/ledger.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import { createLedgerClient, requestTypes, type LedgerClient } from './client/index.js';
import type { Credential, Role } from './grpc/auth.js';

// Authentication and authorisation through real gRPC (ledger README §6): bearer credentials, the
// role table, and the credential's name recorded as the actor of every entry.

// pg-pool's end() resolves before its connections have closed, so the DROP DATABASE … WITH (FORCE)
// that follows in the harness's close() can terminate a closing connection, and the pool re-emits
// that error; with no listener it would be an uncaught exception. Tests listen for it.
const quiet = <P extends { on(event: 'error', listener: () => void): unknown }>(pool: P): P => {
  pool.on('error', () => {});
  return pool;
};

type Method =
  | 'grant'
  | 'purchase'
  | 'reserve'
  | 'extendHold'
  | 'capture'
  | 'release'
  | 'consume'
  | 'renewSubscription'
  | 'refund'
  | 'reverse'
  | 'quote'
  | 'getBalance'
  | 'getEntry'
  | 'listEntries'
  | 'streamJournal';
const writes: Method[] = ['grant', 'purchase', 'reserve', 'extendHold', 'capture', 'release', 'consume', 'renewSubscription', 'refund', 'reverse'];
const reads: Method[] = ['quote', 'getBalance', 'getEntry', 'listEntries', 'streamJournal'];
const rpcName: Record<Method, string> = {
  grant: 'Grant',
  purchase: 'Purchase',
  reserve: 'Reserve',
  extendHold: 'ExtendHold',
  capture: 'Capture',
  release: 'Release',
  consume: 'Consume',
  renewSubscription: 'RenewSubscription',
  refund: 'Refund',
  reverse: 'Reverse',
  quote: 'Quote',
  getBalance: 'GetBalance',
  getEntry: 'GetEntry',
  listEntries: 'ListEntries',
  streamJournal: 'StreamJournal',
};

/** ledger README §6. Admin may call everything; Grant and Reverse are admin's only. */
const allowed: Record<Exclude<Role, 'admin'>, Method[]> = {
  payments: ['purchase', 'renewSubscription', 'refund', ...reads],
  worker: ['reserve', 'extendHold', 'capture', 'release', 'consume', ...reads],
  auditor: [...reads],
};

const token = () => randomBytes(24).toString('hex');
// Names differ from roles, and two credentials share a role, so an actor equal to the role, or
// to the first credential of a role, is caught.
const credentials: Credential[] = [
  { name: 'ops-console', token: token(), role: 'admin' },
  { name: 'stripe-webhooks', token: token(), role: 'payments' },
  { name: 'enhance-worker-a', token: token(), role: 'worker' },
  { name: 'enhance-worker-b', token: token(), role: 'worker' },
  { name: 'finance-audit', token: token(), role: 'auditor' },
];
const byName = (name: string) => credentials.find((c) => c.name === name)!;

type Outcome = { ok: true; value: Record<string, unknown> } | { ok: false; error: grpc.ServiceError };
async function settle(p: Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, value: (await p) as Record<string, unknown> };
  } catch (error) {
    return { ok: false, error: error as grpc.ServiceError };
  }
}

describe('auth', () => {
  let t: TestLedger;
  const clients = new Map<string, LedgerClient>();
  const tokens = new Map<LedgerClient, string>();
  const bearerOf = (client: LedgerClient) => {
    const m = new grpc.Metadata();
    m.set('authorization', `Bearer ${tokens.get(client)}`);
    return m;
  };
  const as = (name: string) => clients.get(name)!;
  const user = 'auth-user';
  let n = 0;
  const key = (p: string) => `${p}-${(n += 1)}`;

  async function journalHead(): Promise<string> {
    const { rows } = await t.pool.query(`SELECT seq::text || ':' || encode(hash, 'hex') AS head FROM journal_head`);
    return rows[0].head as string;
  }

  /** A valid request for each method; hold methods get a fresh open hold each time. */
  async function validRequest(method: Method): Promise<Record<string, unknown>> {
    const admin = as('ops-console');
    const hold = async () =>
      (await admin.reserve({ idempotencyKey: key('auth-hold'), userId: user, credits: 2n })).holdId;
    switch (method) {
      case 'grant':
        return { idempotencyKey: key('grant'), userId: user, credits: 5n, bucket: pb.Bucket.BUCKET_BONUS };
      case 'purchase': {
        const k = key('purchase');
        return { idempotencyKey: k, userId: user, credits: 5n, bucket: pb.Bucket.BUCKET_PURCHASED, amountMicros: 500_000n, currency: 'USD', externalRef: `cs_${k}` };
      }
      case 'reserve':
        return { idempotencyKey: key('reserve'), userId: user, credits: 1n };
      case 'extendHold':
        return { idempotencyKey: key('extend'), holdId: await hold(), ttlMs: 10_000n };
      case 'capture':
        return { idempotencyKey: key('capture'), holdId: await hold(), credits: 1n };
      case 'release':
        return { idempotencyKey: key('release'), holdId: await hold() };
      case 'consume':
        return { idempotencyKey: key('consume'), userId: user, credits: 1n };
      case 'renewSubscription': {
        const k = key('renew');
        const now = Date.now();
        return {
          idempotencyKey: k,
          userId: `auth-sub-${k}`,
          plan: 'pro',
          periodStart: new Date(now - 86_400_000),
          periodEnd: new Date(now + 30 * 86_400_000),
          credits: 100n,
          amountMicros: 9_990_000n,
          currency: 'USD',
          externalRef: `in_${k}`,
        };
      }
      case 'refund': {
        const ref = `cs_${key('refundable')}`;
        await admin.purchase({ idempotencyKey: `p-${ref}`, userId: user, credits: 10n, bucket: pb.Bucket.BUCKET_PURCHASED, amountMicros: 1_000_000n, currency: 'USD', externalRef: ref });
        return { idempotencyKey: key('refund'), externalRef: ref, amountMicros: 100_000n, reason: pb.RefundReason.REFUND_REASON_REFUND };
      }
      case 'reverse': {
        const g = await admin.grant({ idempotencyKey: key('to-reverse'), userId: user, credits: 3n, bucket: pb.Bucket.BUCKET_BONUS });
        return { idempotencyKey: key('reverse'), entryId: g.entryId, reason: 'test correction' };
      }
      case 'quote':
        return { userId: user, credits: 1n };
      case 'streamJournal':
        return { fromEntryId: 1n };
      case 'getBalance':
        return { userId: user };
      case 'getEntry':
        return { entryId: 1n };
      case 'listEntries':
        return { userId: user, pageSize: 5 };
    }
  }

  /** The first message of a server stream (then hangs up), or the stream's error. */
  function firstOfStream(call: grpc.ClientReadableStream<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        call.cancel();
        reject(new Error('stream sent nothing within 5 s'));
      }, 5_000);
      call.on('data', (message) => {
        clearTimeout(timer);
        call.cancel();
        resolve(message);
      });
      call.on('error', (error: grpc.ServiceError) => {
        clearTimeout(timer);
        if (error.code !== grpc.status.CANCELLED) reject(error);
      });
    });
  }

  const send = (client: LedgerClient, method: Method, request: Record<string, unknown>): Promise<unknown> => {
    if (method === 'streamJournal') {
      return firstOfStream(client.raw.streamJournal(pb.StreamJournalRequest.fromPartial(request as { fromEntryId: bigint }), bearerOf(client)));
    }
    return (client[method] as (r: unknown) => Promise<unknown>)(request);
  };

  /** Calls a method with raw metadata (or none), bypassing the typed client's bearer header. */
  function sendRaw(method: Method, request: Record<string, unknown>, metadata: grpc.Metadata): Promise<unknown> {
    const raw = new pb.LedgerServiceClient(t.address, grpc.credentials.createInsecure());
    if (method === 'streamJournal') {
      return firstOfStream(raw.streamJournal(pb.StreamJournalRequest.fromPartial(request as { fromEntryId: bigint }), metadata)).finally(() => raw.close());
    }
    const type = requestTypes[method] as { fromPartial(p: unknown): unknown };
    return new Promise((resolve, reject) => {
      (raw[method] as unknown as (r: unknown, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void).call(
        raw,
        type.fromPartial(request),
        metadata,
        (error, response) => {
          raw.close();
          if (error) reject(error);
          else resolve(response);
        },
      );
    });
  }

  beforeAll(async () => {
    t = await startTestLedger({ options: { credentials } });
    quiet(t.pool);
    for (const c of credentials) {
      const client = createLedgerClient(t.address, c.token);
      clients.set(c.name, client);
      tokens.set(client, c.token);
    }
    await as('ops-console').grant({ idempotencyKey: 'auth-setup', userId: user, credits: 10_000n, bucket: pb.Bucket.BUCKET_BONUS });
  });
  afterAll(async () => {
    for (const c of clients.values()) c.close();
    await t?.close();
  });

  describe('unauthenticated callers', () => {
    const metadataVariants: [string, () => grpc.Metadata][] = [
      ['no authorization metadata', () => new grpc.Metadata()],
      ['an unknown bearer token', () => bearer(`Bearer ${token()}`)],
      ['an empty bearer token', () => bearer('Bearer ')],
      ['a known token under another scheme', () => bearer(`Basic ${byName('ops-console').token}`)],
      ['a known token without a scheme', () => bearer(byName('ops-console').token)],
      ['a known token with one character changed', () => bearer(`Bearer ${byName('ops-console').token.slice(0, -1)}${byName('ops-console').token.endsWith('0') ? '1' : '0'}`)],
    ];
    function bearer(value: string): grpc.Metadata {
      const m = new grpc.Metadata();
      m.set('authorization', value);
      return m;
    }

    for (const [label, metadata] of metadataVariants) {
      it(`${label} → UNAUTHENTICATED on every method, nothing written`, async () => {
        for (const method of [...writes, ...reads]) {
          const request = await validRequest(method);
          const head = await journalHead();
          const o = await settle(sendRaw(method, request, metadata()));
          expect({ method, code: o.ok ? 'OK' : grpc.status[o.error.code] }).toEqual({ method, code: 'UNAUTHENTICATED' });
          if (!o.ok) expect(o.error.details).toMatch(/authorization/);
          expect(await journalHead()).toBe(head);
        }
        await t.expectInvariants();
      });
    }

    it('the Bearer scheme is case-insensitive (RFC 9110): bearer and BEARER work', async () => {
      for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
        const o = await settle(sendRaw('getBalance', await validRequest('getBalance'), bearer(`${scheme} ${byName('ops-console').token}`)));
        expect({ scheme, ok: o.ok }).toEqual({ scheme, ok: true });
      }
      await t.expectInvariants();
    });

    it('the typed client with an unknown token is refused too', async () => {
      const stranger = createLedgerClient(t.address, token());
      try {
        const o = await settle(stranger.getBalance({ userId: user }));
        expect(o.ok ? 'OK' : grpc.status[o.error.code]).toBe('UNAUTHENTICATED');
      } finally {
        stranger.close();
      }
    });
  });

  describe('roles', () => {
    for (const role of ['payments', 'worker', 'auditor'] as const) {
      const name = credentials.find((c) => c.role === role)!.name;
      for (const method of [...writes, ...reads]) {
        const permitted = allowed[role].includes(method);
        it(`${role} ${permitted ? 'may' : 'may not'} call ${rpcName[method]}`, async () => {
          const request = await validRequest(method);
          const head = await journalHead();
          const o = await settle(send(as(name), method, request));
          if (permitted) {
            if (!o.ok) throw new Error(`${role} ${rpcName[method]} refused: ${grpc.status[o.error.code]} ${o.error.details}`);
            if (writes.includes(method)) {
              const { entry } = await as('finance-audit').getEntry({ entryId: o.value.entryId as bigint });
              expect(entry?.actor).toBe(name);
            } else {
              expect(await journalHead()).toBe(head);
            }
          } else {
            expect(o.ok ? 'OK' : grpc.status[o.error.code]).toBe('PERMISSION_DENIED');
            if (!o.ok) {
              expect(o.error.details).toContain(role);
              expect(o.error.details).toContain(rpcName[method]);
            }
            expect(await journalHead()).toBe(head);
          }
        });
      }
    }

    it('a denied call is denied before its request is looked at', async () => {
      const head = await journalHead();
      const o = await settle(as('finance-audit').consume({ idempotencyKey: '', userId: '', credits: -1n }));
      expect(o.ok ? 'OK' : grpc.status[o.error.code]).toBe('PERMISSION_DENIED');
      expect(await journalHead()).toBe(head);
    });

    it('admin may call every method', async () => {
      for (const method of [...writes, ...reads]) {
        const o = await settle(send(as('ops-console'), method, await validRequest(method)));
        expect({ method, code: o.ok ? 'OK' : grpc.status[o.error.code] }).toEqual({ method, code: 'OK' });
      }
      await t.expectInvariants();
    });
  });

  describe('actor', () => {
    it('each entry records the name of the credential that wrote it', async () => {
      const workerA = as('enhance-worker-a');
      const workerB = as('enhance-worker-b');
      const g = await as('ops-console').grant({ idempotencyKey: 'actor-grant', userId: 'actor-user', credits: 50n, bucket: pb.Bucket.BUCKET_BONUS });
      const p = await as('stripe-webhooks').purchase({
        idempotencyKey: 'actor-purchase',
        userId: 'actor-user',
        credits: 10n,
        bucket: pb.Bucket.BUCKET_PURCHASED,
        amountMicros: 1_000_000n,
        currency: 'USD',
        externalRef: 'cs_actor',
      });
      const r = await workerA.reserve({ idempotencyKey: 'actor-reserve', userId: 'actor-user', credits: 5n });
      const c = await workerB.capture({ idempotencyKey: 'actor-capture', holdId: r.holdId, credits: 5n });
      const x = await workerB.consume({ idempotencyKey: 'actor-consume', userId: 'actor-user', credits: 1n });
      const expected = new Map<bigint, string>([
        [g.entryId, 'ops-console'],
        [p.entryId, 'stripe-webhooks'],
        [r.entryId, 'enhance-worker-a'],
        [c.entryId, 'enhance-worker-b'],
        [x.entryId, 'enhance-worker-b'],
      ]);
      for (const [entryId, actor] of expected) {
        const { entry } = await as('finance-audit').getEntry({ entryId });
        expect({ entryId, actor: entry?.actor }).toEqual({ entryId, actor });
        const { rows } = await t.pool.query('SELECT actor FROM entries WHERE seq = $1', [entryId.toString()]);
        expect(rows[0].actor).toBe(actor);
      }
      const listed = await as('finance-audit').listEntries({ userId: 'actor-user' });
      expect(listed.entries.map((e) => e.actor)).toEqual(['ops-console', 'stripe-webhooks', 'enhance-worker-a', 'enhance-worker-b', 'enhance-worker-b']);
      // A replay by another credential answers from the journal and leaves the actor alone.
      const replay = await workerB.reserve({ idempotencyKey: 'actor-reserve', userId: 'actor-user', credits: 5n });
      expect(replay).toEqual({ ...r, replayed: true });
      expect((await as('finance-audit').getEntry({ entryId: r.entryId })).entry?.actor).toBe('enhance-worker-a');
      await t.expectInvariants();
    });
  });
});
