import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, RefundReason } from '../generated/proto/credits/ledger/v1/ledger.js';
import { ManualClock } from '../lib/clock.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';
import type { LedgerClient } from './client/index.js';
import { limits } from './domain/limits.js';
import { errorReason, fieldViolations } from './client/index.js';
import { requestBytesMax } from './grpc/server.js';

// Malformed and refused writes through real gRPC (ledger README §5, §6): each is answered with the
// right status code, a message naming the field (or the hold) at fault, and writes nothing.

// pg-pool's end() resolves before its connections have closed, so the DROP DATABASE … WITH (FORCE)
// that follows in the harness's close() can terminate a closing connection, and the pool re-emits
// that error; with no listener it would be an uncaught exception. Tests listen for it.
const quiet = <P extends { on(event: 'error', listener: () => void): unknown }>(pool: P): P => {
  pool.on('error', () => {});
  return pool;
};

const INT64_MAX = 9_223_372_036_854_775_807n;
const INT64_MIN = -9_223_372_036_854_775_808n;

type Req = Record<string, unknown>;
type Outcome = { ok: true; value: Req } | { ok: false; error: ServiceError };

async function settle(p: Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, value: (await p) as Req };
  } catch (error) {
    return { ok: false, error: error as ServiceError };
  }
}

interface Want {
  code: status;
  /** Text the message must contain: the field's name (or the offending hold). */
  names: string | (() => string);
  reason?: string;
  /** INVALID_ARGUMENT: the proto field path its google.rpc.BadRequest must name. */
  field?: string;
}

interface Case extends Want {
  name: string;
  patch: Req | (() => Req);
}

const invalid = (name: string, patch: Req | (() => Req), field: string): Case => ({
  name,
  patch,
  code: status.INVALID_ARGUMENT,
  names: `${field}:`,
  field,
});

const keyCases: Case[] = [
  invalid('missing idempotency_key', { idempotencyKey: '' }, 'idempotency_key'),
  invalid('blank idempotency_key', { idempotencyKey: '   ' }, 'idempotency_key'),
  invalid('oversized idempotency_key (129 chars)', { idempotencyKey: 'k'.repeat(limits.idempotencyKeyLengthMax + 1) }, 'idempotency_key'),
  invalid('non-ASCII idempotency_key', { idempotencyKey: 'clé-1' }, 'idempotency_key'),
  invalid('idempotency_key in the ledger-reserved namespace', () => ({ idempotencyKey: `ledger:hold-timeout:${randomUUID()}` }), 'idempotency_key'),
];

const amountCases = (field: string, key: string, max: bigint): Case[] => [
  invalid(`negative ${field}`, { [key]: -1n }, field),
  invalid(`zero ${field}`, { [key]: 0n }, field),
  invalid(`${field} above the server's limit`, { [key]: max + 1n }, field),
  invalid(`${field} = int64 max`, { [key]: INT64_MAX }, field),
  invalid(`${field} = int64 min`, { [key]: INT64_MIN }, field),
];
const creditCases = amountCases('credits', 'credits', limits.creditsMax);

const metadataCases: Case[] = [
  invalid(
    `metadata with ${limits.metadataKeysMax + 1} keys`,
    { metadata: Object.fromEntries(Array.from({ length: limits.metadataKeysMax + 1 }, (_, i) => [`k${i}`, 'v'])) },
    'metadata',
  ),
  invalid(`metadata value of ${limits.metadataValueBytesMax + 1} bytes`, { metadata: { note: 'x'.repeat(limits.metadataValueBytesMax + 1) } }, 'metadata.note'),
  // 86 characters but 258 bytes: the limit is in bytes.
  invalid('metadata value over the byte limit in multi-byte characters', { metadata: { note: '€'.repeat(86) } }, 'metadata.note'),
  invalid(`metadata key of ${limits.metadataKeyBytesMax + 1} bytes`, { metadata: { ['k'.repeat(limits.metadataKeyBytesMax + 1)]: 'v' } }, 'metadata'),
  invalid('metadata with an empty key', { metadata: { '': 'v' } }, 'metadata'),
  invalid('metadata value with a NUL character', { metadata: { note: 'a\u0000b' } }, 'metadata.note'),
  invalid('metadata key with a NUL character', { metadata: { ['k\u0000']: 'v' } }, 'metadata'),
];

const oversizedBody = (patch: (bytes: string) => Req): Case => ({
  name: `request body larger than ${requestBytesMax} bytes`,
  patch: () => patch('x'.repeat(requestBytesMax + 1024)),
  code: status.RESOURCE_EXHAUSTED,
  names: String(requestBytesMax),
});

describe('bad input', () => {
  let t: TestLedger;
  const clock = new ManualClock('2026-11-24T12:00:00.000Z');
  const user = 'bi-user';
  let keySeq = 0;
  const key = (prefix: string) => `${prefix}-${(keySeq += 1)}`;
  /** Open holds for the hold methods' cases (5 credits each, default TTL). */
  const holds: Record<'extend' | 'capture' | 'release', string> = { extend: '', capture: '', release: '' };
  const reversible = { unspent: 0n, spent: 0n, reversed: 0n, reversal: 0n, openHold: 0n };
  const day = 86_400_000;
  const at = (offsetMs: number) => new Date(clock.now().getTime() + offsetMs);
  const subscribedPeriod = { start: new Date('2026-11-24T00:00:00.000Z'), end: new Date('2026-12-24T00:00:00.000Z') };

  async function snapshot() {
    const { rows } = await t.pool.query(`
      SELECT (SELECT seq::text FROM journal_head) AS head_seq,
             (SELECT encode(hash, 'hex') FROM journal_head) AS head_hash,
             (SELECT COUNT(*)::int FROM entries) AS entries,
             (SELECT COUNT(*)::int FROM transfers) AS transfers,
             (SELECT COUNT(*)::int FROM users) AS users,
             (SELECT COUNT(*)::int FROM lots) AS lots,
             (SELECT COUNT(*)::int FROM accounts) AS accounts,
             (SELECT COALESCE(SUM(version), 0)::text FROM accounts) AS account_versions,
             (SELECT md5(COALESCE(string_agg(id::text || status || expires_at::text, ',' ORDER BY id), '')) FROM holds) AS holds`);
    return rows[0] as Record<string, unknown>;
  }

  /** Sends the call, asserts the refusal, and that the journal and every total are unchanged. */
  async function expectRefused(send: () => Promise<unknown>, want: Want) {
    const before = await snapshot();
    const o = await settle(send());
    if (o.ok) throw new Error(`expected ${status[want.code]}, the call succeeded: ${JSON.stringify(o.value, (_, v) => (typeof v === 'bigint' ? `${v}` : v))}`);
    expect({ code: status[o.error.code], reason: errorReason(o.error) }).toEqual({ code: status[want.code], reason: want.reason });
    expect(o.error.details).toContain(typeof want.names === 'function' ? want.names() : want.names);
    if (want.field !== undefined) {
      const violations = fieldViolations(o.error);
      expect(violations.map((v) => v.field)).toEqual([want.field]);
      expect(o.error.details).toBe(`${violations[0]!.field}: ${violations[0]!.description}`);
    }
    expect(await snapshot()).toEqual(before);
    return o.error;
  }

  beforeAll(async () => {
    t = await startTestLedger({ clock });
    quiet(t.pool);
    await t.client.admin.grant({ idempotencyKey: 'setup-grant', userId: user, credits: 1_000n, bucket: Bucket.BUCKET_BONUS });
    await t.client.payments.purchase({
      idempotencyKey: 'setup-purchase',
      userId: user,
      credits: 100n,
      bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 10_000_000n,
      currency: 'USD',
      externalRef: 'cs_taken',
    });
    await t.client.payments.purchase({
      idempotencyKey: 'setup-refundable',
      userId: user,
      credits: 100n,
      bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 10_000_000n,
      currency: 'USD',
      externalRef: 'cs_refundable',
    });
    await t.client.payments.renewSubscription({
      idempotencyKey: 'setup-renewal',
      userId: 'bi-sub',
      plan: 'pro',
      periodStart: subscribedPeriod.start,
      periodEnd: subscribedPeriod.end,
      credits: 500n,
      amountMicros: 9_990_000n,
      currency: 'USD',
      externalRef: 'in_setup',
    });
    // Entries for Reverse: a grant left alone, one whose credits were spent since, one already
    // reversed (and its reversal), and a reservation whose hold is still open.
    reversible.unspent = (await t.client.admin.grant({ idempotencyKey: 'setup-rev-unspent', userId: 'bi-rev', credits: 10n, bucket: Bucket.BUCKET_BONUS })).entryId;
    reversible.spent = (await t.client.admin.grant({ idempotencyKey: 'setup-rev-spent', userId: 'bi-rev-spent', credits: 10n, bucket: Bucket.BUCKET_BONUS })).entryId;
    await t.client.worker.consume({ idempotencyKey: 'setup-rev-spend', userId: 'bi-rev-spent', credits: 10n });
    reversible.reversed = (await t.client.admin.grant({ idempotencyKey: 'setup-rev-reversed', userId: 'bi-rev', credits: 5n, bucket: Bucket.BUCKET_BONUS })).entryId;
    reversible.reversal = (await t.client.admin.reverse({ idempotencyKey: 'setup-rev-reversal', entryId: reversible.reversed, reason: 'setup' })).entryId;
    reversible.openHold = (await t.client.worker.reserve({ idempotencyKey: 'setup-rev-hold', userId: user, credits: 1n })).entryId;
    for (const name of Object.keys(holds) as (keyof typeof holds)[]) {
      holds[name] = (await t.client.worker.reserve({ idempotencyKey: `setup-hold-${name}`, userId: user, credits: 5n })).holdId;
    }
  });
  afterAll(async () => {
    await t?.close();
  });

  interface MethodSpec {
    method: 'grant' | 'purchase' | 'reserve' | 'extendHold' | 'capture' | 'release' | 'consume' | 'renewSubscription' | 'refund' | 'reverse';
    client: () => LedgerClient;
    valid: () => Req;
    cases: Case[];
  }

  const holdIdCases: Case[] = [
    invalid('missing hold_id', { holdId: '' }, 'hold_id'),
    invalid('malformed hold_id', { holdId: 'hold-123' }, 'hold_id'),
    invalid('hold_id with SQL in it', { holdId: "00000000-0000-0000-0000-000000000000' OR '1'='1" }, 'hold_id'),
    { name: 'unknown hold', patch: () => ({ holdId: randomUUID() }), code: status.NOT_FOUND, names: 'hold_id:' },
  ];

  const badUpstream = (patch: Req): Req => ({
    upstream: { amountMicros: 1_000n, currency: 'USD', requestId: 'pred_1', model: 'm', ...patch },
  });
  const upstreamCases: Case[] = [
    invalid('negative upstream.amount_micros', badUpstream({ amountMicros: -1n }), 'upstream.amount_micros'),
    invalid('upstream.amount_micros above the limit', badUpstream({ amountMicros: limits.amountMicrosMax + 1n }), 'upstream.amount_micros'),
    invalid('upstream.amount_micros = int64 max', badUpstream({ amountMicros: INT64_MAX }), 'upstream.amount_micros'),
    invalid('unknown upstream.currency', badUpstream({ currency: 'XYZ' }), 'upstream.currency'),
    invalid('missing upstream.currency', badUpstream({ currency: '' }), 'upstream.currency'),
    invalid('oversized upstream.request_id', badUpstream({ requestId: 'p'.repeat(256) }), 'upstream.request_id'),
  ];

  const specs: MethodSpec[] = [
    {
      method: 'grant',
      client: () => t.client.admin,
      valid: () => ({ idempotencyKey: key('grant'), userId: user, credits: 10n, bucket: Bucket.BUCKET_BONUS }),
      cases: [
        ...creditCases,
        ...keyCases,
        ...metadataCases,
        invalid('missing user_id', { userId: '' }, 'user_id'),
        invalid('oversized user_id', { userId: 'u'.repeat(limits.userIdLengthMax + 1) }, 'user_id'),
        invalid('user_id with a space', { userId: 'bi user' }, 'user_id'),
        invalid('unspecified bucket', { bucket: Bucket.BUCKET_UNSPECIFIED }, 'bucket'),
        invalid('unknown bucket value', { bucket: 99 }, 'bucket'),
        invalid('priority out of range', { priority: limits.priorityAbsMax + 1 }, 'priority'),
        invalid('expires_at in the past', () => ({ expiresAt: new Date(clock.now().getTime() - 1_000) }), 'expires_at'),
        invalid('expires_at past year 9999', { expiresAt: new Date('+010000-01-01T00:00:00Z') }, 'expires_at'),
        invalid('effective_at before year 1', { effectiveAt: new Date('-000001-01-01T00:00:00Z') }, 'effective_at'),
        invalid(
          'expires_at before effective_at',
          () => ({ effectiveAt: new Date(clock.now().getTime() + 86_400_000), expiresAt: new Date(clock.now().getTime() + 3_600_000) }),
          'expires_at',
        ),
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
    {
      method: 'purchase',
      client: () => t.client.payments,
      valid: () => {
        const k = key('purchase');
        return {
          idempotencyKey: k,
          userId: user,
          credits: 100n,
          bucket: Bucket.BUCKET_PURCHASED,
          amountMicros: 1_000_000n,
          currency: 'USD',
          externalRef: `cs_${k}`,
        };
      },
      cases: [
        ...creditCases,
        ...amountCases('amount_micros', 'amountMicros', limits.amountMicrosMax),
        ...keyCases,
        ...metadataCases,
        invalid('unknown currency', { currency: 'XYZ' }, 'currency'),
        invalid('ISO currency the server does not take', { currency: 'GBP' }, 'currency'),
        invalid('lower-case currency', { currency: 'usd' }, 'currency'),
        invalid('missing currency', { currency: '' }, 'currency'),
        invalid('missing external_ref', { externalRef: '' }, 'external_ref'),
        invalid('oversized external_ref', { externalRef: 'r'.repeat(limits.externalRefLengthMax + 1) }, 'external_ref'),
        invalid('subscription bucket (not for purchases)', { bucket: Bucket.BUCKET_SUBSCRIPTION }, 'bucket'),
        invalid('unspecified bucket', { bucket: Bucket.BUCKET_UNSPECIFIED }, 'bucket'),
        invalid('missing user_id', { userId: '' }, 'user_id'),
        {
          name: 'external_ref already purchased under another key',
          patch: { externalRef: 'cs_taken' },
          code: status.ALREADY_EXISTS,
          names: 'external_ref',
        },
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
    {
      method: 'reserve',
      client: () => t.client.worker,
      valid: () => ({ idempotencyKey: key('reserve'), userId: user, credits: 5n, ttlMs: 0n }),
      cases: [
        ...creditCases,
        ...keyCases,
        ...metadataCases,
        invalid('negative ttl_ms', { ttlMs: -1n }, 'ttl_ms'),
        invalid('ttl_ms below the minimum', { ttlMs: BigInt(limits.holdTtlMsMin - 1) }, 'ttl_ms'),
        invalid("ttl_ms above the server's maximum", () => ({ ttlMs: BigInt(t.options.holdTtlMsMax + 1) }), 'ttl_ms'),
        invalid('ttl_ms = int64 max', { ttlMs: INT64_MAX }, 'ttl_ms'),
        invalid('missing user_id', { userId: '' }, 'user_id'),
        { name: 'unknown user', patch: { userId: 'bi-nobody' }, code: status.NOT_FOUND, names: 'user_id:' },
        {
          name: 'more credits than available',
          patch: { credits: 1_000_000n },
          code: status.FAILED_PRECONDITION,
          reason: 'INSUFFICIENT_CREDITS',
          names: 'credits',
        },
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
    {
      method: 'extendHold',
      client: () => t.client.worker,
      valid: () => ({ idempotencyKey: key('extend'), holdId: holds.extend, ttlMs: 30_000n }),
      cases: [
        ...keyCases,
        ...holdIdCases,
        invalid('zero ttl_ms', { ttlMs: 0n }, 'ttl_ms'),
        invalid('negative ttl_ms', { ttlMs: -5n }, 'ttl_ms'),
        invalid("ttl_ms above the server's maximum", () => ({ ttlMs: BigInt(t.options.holdTtlMsMax + 1) }), 'ttl_ms'),
        invalid('ttl_ms = int64 max', { ttlMs: INT64_MAX }, 'ttl_ms'),
        oversizedBody((bytes) => ({ idempotencyKey: bytes })),
      ],
    },
    {
      method: 'capture',
      client: () => t.client.worker,
      valid: () => ({
        idempotencyKey: key('capture'),
        holdId: holds.capture,
        credits: 3n,
        upstream: { amountMicros: 20_000n, currency: 'USD', requestId: 'pred_ok', model: 'm' },
      }),
      cases: [
        ...creditCases,
        ...keyCases,
        ...metadataCases,
        ...holdIdCases,
        ...upstreamCases,
        {
          name: 'capture above the hold',
          patch: { credits: 6n },
          code: status.FAILED_PRECONDITION,
          reason: 'CAPTURE_EXCEEDS_HOLD',
          names: 'credits',
        },
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
    {
      method: 'release',
      client: () => t.client.worker,
      valid: () => ({ idempotencyKey: key('release'), holdId: holds.release }),
      cases: [...keyCases, ...metadataCases, ...holdIdCases, oversizedBody((bytes) => ({ metadata: { big: bytes } }))],
    },
    {
      method: 'consume',
      client: () => t.client.worker,
      valid: () => ({ idempotencyKey: key('consume'), userId: user, credits: 2n }),
      cases: [
        ...creditCases,
        ...keyCases,
        ...metadataCases,
        ...upstreamCases,
        invalid('missing user_id', { userId: '' }, 'user_id'),
        { name: 'unknown user', patch: { userId: 'bi-nobody' }, code: status.NOT_FOUND, names: 'user_id:' },
        {
          name: 'more credits than available',
          patch: { credits: 1_000_000n },
          code: status.FAILED_PRECONDITION,
          reason: 'INSUFFICIENT_CREDITS',
          names: 'credits',
        },
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
  ];

  specs.push(
    {
      method: 'renewSubscription',
      client: () => t.client.payments,
      valid: () => {
        const k = key('renew');
        return {
          idempotencyKey: k,
          userId: `bi-sub-${k}`,
          plan: 'pro',
          periodStart: at(-day),
          periodEnd: at(29 * day),
          credits: 500n,
          amountMicros: 9_990_000n,
          currency: 'USD',
          externalRef: `in_${k}`,
        };
      },
      cases: [
        ...creditCases,
        invalid('negative amount_micros', { amountMicros: -1n }, 'amount_micros'),
        invalid('amount_micros above the limit', { amountMicros: limits.amountMicrosMax + 1n }, 'amount_micros'),
        invalid('amount_micros = int64 max', { amountMicros: INT64_MAX }, 'amount_micros'),
        invalid('a currency on a free period', { amountMicros: 0n, externalRef: '' }, 'currency'),
        invalid('an external_ref on a free period', { amountMicros: 0n, currency: '' }, 'external_ref'),
        ...keyCases,
        ...metadataCases,
        invalid('unknown currency', { currency: 'XYZ' }, 'currency'),
        invalid('missing external_ref on a paid period', { externalRef: '' }, 'external_ref'),
        invalid('missing user_id', { userId: '' }, 'user_id'),
        invalid('missing plan', { plan: '' }, 'plan'),
        invalid('oversized plan', { plan: 'p'.repeat(65) }, 'plan'),
        invalid('missing period_start', { periodStart: undefined }, 'period_start'),
        invalid('missing period_end', { periodEnd: undefined }, 'period_end'),
        invalid('period_end past year 9999', { periodEnd: new Date('+010000-01-01T00:00:00Z') }, 'period_end'),
        invalid('period_end before period_start', () => ({ periodStart: at(day), periodEnd: at(-day) }), 'period_end'),
        // A period that already ended is not bad input: the invoice was paid, so the renewal is
        // recorded and its lot expired by the sweeper (see subscription.e2e.test.ts).
        invalid('period_end equal to period_start', () => ({ periodStart: at(day), periodEnd: at(day) }), 'period_end'),
        {
          name: 'a period already renewed, under another key',
          patch: () => ({ userId: 'bi-sub', periodStart: subscribedPeriod.start, periodEnd: subscribedPeriod.end }),
          code: status.ALREADY_EXISTS,
          names: 'period_start',
        },
        { name: 'external_ref already recorded', patch: { externalRef: 'cs_taken' }, code: status.ALREADY_EXISTS, names: 'external_ref' },
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
    {
      method: 'refund',
      client: () => t.client.payments,
      valid: () => ({ idempotencyKey: key('refund'), externalRef: 'cs_refundable', amountMicros: 1_000_000n, reason: RefundReason.REFUND_REASON_REFUND }),
      cases: [
        ...amountCases('amount_micros', 'amountMicros', limits.amountMicrosMax),
        ...keyCases,
        ...metadataCases,
        invalid('unspecified reason', { reason: RefundReason.REFUND_REASON_UNSPECIFIED }, 'reason'),
        invalid('unknown reason value', { reason: 99 }, 'reason'),
        invalid('missing external_ref', { externalRef: '' }, 'external_ref'),
        invalid('oversized external_ref', { externalRef: 'r'.repeat(limits.externalRefLengthMax + 1) }, 'external_ref'),
        { name: 'unknown external_ref', patch: { externalRef: 'cs_never_paid' }, code: status.NOT_FOUND, names: 'external_ref' },
        {
          name: 'refund above the payment',
          patch: { amountMicros: 10_000_001n },
          code: status.FAILED_PRECONDITION,
          reason: 'REFUND_EXCEEDS_PAYMENT',
          names: 'amount_micros',
        },
        oversizedBody((bytes) => ({ metadata: { big: bytes } })),
      ],
    },
    {
      method: 'reverse',
      client: () => t.client.admin,
      valid: () => ({ idempotencyKey: key('reverse'), entryId: reversible.unspent, reason: 'granted to the wrong user' }),
      cases: [
        ...keyCases,
        invalid('zero entry_id', { entryId: 0n }, 'entry_id'),
        invalid('negative entry_id', { entryId: -1n }, 'entry_id'),
        { name: 'unknown entry_id', patch: { entryId: 9_999_999n }, code: status.NOT_FOUND, names: 'entry_id' },
        { name: 'entry_id = int64 max', patch: { entryId: INT64_MAX }, code: status.NOT_FOUND, names: 'entry_id' },
        invalid('missing reason', { reason: '' }, 'reason'),
        invalid('blank reason', { reason: '   ' }, 'reason'),
        invalid('reason over 256 bytes', { reason: 'é'.repeat(129) }, 'reason'),
        invalid('reason with a NUL character', { reason: 'typo\u0000fix' }, 'reason'),
        {
          name: 'an entry already reversed',
          patch: () => ({ entryId: reversible.reversed }),
          code: status.FAILED_PRECONDITION,
          reason: 'ALREADY_REVERSED',
          names: 'entry',
        },
        {
          name: 'a reversal',
          patch: () => ({ entryId: reversible.reversal }),
          code: status.FAILED_PRECONDITION,
          reason: 'NOT_REVERSIBLE',
          names: 'entry',
        },
        {
          name: 'the reservation of an open hold',
          patch: () => ({ entryId: reversible.openHold }),
          code: status.FAILED_PRECONDITION,
          reason: 'HOLD_OPEN',
          names: 'entry',
        },
        {
          name: 'a grant whose credits were spent since',
          patch: () => ({ entryId: reversible.spent }),
          code: status.FAILED_PRECONDITION,
          reason: 'INSUFFICIENT_CREDITS',
          names: 'entry',
        },
        oversizedBody((bytes) => ({ reason: bytes })),
      ],
    },
  );

  for (const spec of specs) {
    describe(spec.method, () => {
      const send = (request: Req) => (spec.client()[spec.method] as (r: Req) => Promise<unknown>)(request);
      for (const c of spec.cases) {
        it(`${c.name} → ${status[c.code]}`, async () => {
          const patch = typeof c.patch === 'function' ? c.patch() : c.patch;
          await expectRefused(() => send({ ...spec.valid(), ...patch }), c);
        });
      }
      // The control: the same base request, unpatched, is accepted and written.
      it('the valid request is accepted (control)', async () => {
        const before = await snapshot();
        const o = await settle(send(spec.valid()));
        if (!o.ok) throw new Error(`valid ${spec.method} refused: ${status[o.error.code]} ${o.error.details}`);
        expect(o.value.replayed).toBe(false);
        expect(BigInt((await snapshot()).head_seq as string)).toBe(BigInt(before.head_seq as string) + 1n);
        await t.expectInvariants();
      });
    });
  }

  describe('hold lifecycle refusals', () => {
    const reserve = async (credits: bigint, ttlMs = 0n) =>
      (await t.client.worker.reserve({ idempotencyKey: key('lc-reserve'), userId: user, credits, ttlMs })).holdId;
    const capture = (holdId: string, credits = 1n) => t.client.worker.capture({ idempotencyKey: key('lc-capture'), holdId, credits });
    const release = (holdId: string) => t.client.worker.release({ idempotencyKey: key('lc-release'), holdId });
    const extend = (holdId: string) => t.client.worker.extendHold({ idempotencyKey: key('lc-extend'), holdId, ttlMs: 30_000n });

    it('capture, release and extend after release → HOLD_CLOSED', async () => {
      const holdId = await reserve(4n);
      const releaseKey = key('lc-release');
      const released = await t.client.worker.release({ idempotencyKey: releaseKey, holdId });
      expect(released.releasedCredits).toBe(4n);
      const closed = { code: status.FAILED_PRECONDITION, reason: 'HOLD_CLOSED', names: holdId };
      await expectRefused(() => capture(holdId), closed);
      await expectRefused(() => release(holdId), closed); // release twice
      await expectRefused(() => extend(holdId), closed);
      // The first release's own key still replays its result.
      const replay = await t.client.worker.release({ idempotencyKey: releaseKey, holdId });
      expect(replay).toEqual({ ...released, replayed: true });
      await t.expectInvariants();
    });

    it('capture twice → HOLD_CLOSED', async () => {
      const holdId = await reserve(4n);
      await capture(holdId, 4n);
      const closed = { code: status.FAILED_PRECONDITION, reason: 'HOLD_CLOSED', names: holdId };
      await expectRefused(() => capture(holdId), closed);
      await expectRefused(() => release(holdId), closed);
      await t.expectInvariants();
    });

    it('capture and extend after the TTL → HOLD_EXPIRED, before and after the sweeper voids the hold', async () => {
      const holdId = await reserve(3n, 5_000n);
      clock.advance(5_000);
      const expired = { code: status.FAILED_PRECONDITION, reason: 'HOLD_EXPIRED', names: holdId };
      await expectRefused(() => capture(holdId), expired);
      await expectRefused(() => extend(holdId), expired);
      expect(await t.ledger.sweeper.sweepOnce()).toBe(1);
      await expectRefused(() => capture(holdId), expired);
      await expectRefused(() => extend(holdId), expired);
      await expectRefused(() => release(holdId), expired);
      await t.expectInvariants();
    });
  });
});
