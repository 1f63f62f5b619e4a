import { describe, expect, it } from 'vitest';
import { LedgerError } from './errors.js';
import { limits, systemKeyPrefix } from './limits.js';
import * as v from './validate.js';

/** Unit tests of the field validators: pure functions, no database. */

const ctx: v.ValidationContext = { currencies: new Set(['USD', 'EUR']), holdTtlMsDefault: 60_000, holdTtlMsMax: 3_600_000 };
const int64Max = 2n ** 63n - 1n;

/** Asserts `fn` throws a LedgerError INVALID_ARGUMENT whose message starts with the field's name. */
function expectInvalid(fn: () => unknown, field: string): LedgerError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected ${field} to be rejected`).toBeInstanceOf(LedgerError);
  const error = thrown as LedgerError;
  expect(error.code).toBe('INVALID_ARGUMENT');
  expect(error.reason).toBeUndefined();
  expect(error.message.startsWith(`${field}: `), `message "${error.message}" should name ${field}`).toBe(true);
  return error;
}

describe('credits', () => {
  it('accepts positive whole credits up to creditsMax, as bigint or safe integer', () => {
    expect(v.credits(1n)).toBe(1n);
    expect(v.credits(500)).toBe(500n);
    expect(v.credits(limits.creditsMax)).toBe(limits.creditsMax);
  });

  it.each([
    ['negative', -1n],
    ['negative number', -5],
    ['zero', 0n],
    ['zero number', 0],
    ['above creditsMax', limits.creditsMax + 1n],
    ['int64 max', int64Max],
    ['above int64', 2n ** 64n],
    ['fraction', 1.5],
    ['unsafe integer number', 2 ** 53],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['string', '10'],
    ['null', null],
    ['undefined', undefined],
  ])('rejects %s', (_name, value) => {
    expectInvalid(() => v.credits(value), 'credits');
  });

  it('names the field it was given', () => {
    expectInvalid(() => v.credits(0n, 'upstream.credits'), 'upstream.credits');
  });
});

describe('amountMicros', () => {
  it('accepts zero only when not required positive, and up to amountMicrosMax', () => {
    expect(v.amountMicros(0n, 'upstream.amount_micros', false)).toBe(0n);
    expect(v.amountMicros(299_990_000n, 'amount_micros', true)).toBe(299_990_000n);
    expect(v.amountMicros(limits.amountMicrosMax, 'amount_micros', true)).toBe(limits.amountMicrosMax);
  });

  it.each([
    ['zero when positive', 0n, true],
    ['negative', -1n, false],
    ['negative when positive', -1n, true],
    ['above amountMicrosMax', limits.amountMicrosMax + 1n, false],
    ['above int64', 2n ** 63n, true],
    ['fraction', 0.5, false],
    ['string', '1', true],
  ])('rejects %s', (_name, value, positive) => {
    expectInvalid(() => v.amountMicros(value, 'amount_micros', positive), 'amount_micros');
  });
});

describe('idempotencyKey', () => {
  it('accepts 1–128 printable ASCII characters', () => {
    expect(v.idempotencyKey('k')).toBe('k');
    expect(v.idempotencyKey('cs_test_a1B2~!')).toBe('cs_test_a1B2~!');
    expect(v.idempotencyKey('x'.repeat(limits.idempotencyKeyLengthMax))).toHaveLength(128);
    // The reserved prefix is refused only as a prefix.
    expect(v.idempotencyKey('job:ledger:1')).toBe('job:ledger:1');
  });

  it.each([
    ['empty', ''],
    ['oversized', 'x'.repeat(limits.idempotencyKeyLengthMax + 1)],
    ['with a space', 'a b'],
    ['with a tab', 'a\tb'],
    ['non-ASCII', 'clé'],
    ['a control character', 'a\u0000'],
    ['not a string', 42],
    ['undefined', undefined],
  ])('rejects %s', (_name, value) => {
    expectInvalid(() => v.idempotencyKey(value), 'idempotency_key');
  });

  it('rejects the reserved "ledger:" prefix', () => {
    const error = expectInvalid(() => v.idempotencyKey(`${systemKeyPrefix}hold-timeout:x`), 'idempotency_key');
    expect(error.message).toContain('reserved');
    expectInvalid(() => v.idempotencyKey('ledger:'), 'idempotency_key');
  });
});

describe('userId and externalRef', () => {
  it('accept bounded printable strings', () => {
    expect(v.userId('u'.repeat(limits.userIdLengthMax))).toHaveLength(limits.userIdLengthMax);
    expect(v.externalRef('cs_' + 'a'.repeat(limits.externalRefLengthMax - 3))).toHaveLength(limits.externalRefLengthMax);
  });

  it.each([
    ['empty', ''],
    ['oversized', 'u'.repeat(limits.userIdLengthMax + 1)],
    ['with a space', 'user 1'],
    ['not a string', 7],
  ])('userId rejects %s', (_name, value) => {
    expectInvalid(() => v.userId(value), 'user_id');
  });

  it.each([
    ['empty', ''],
    ['oversized', 'c'.repeat(limits.externalRefLengthMax + 1)],
    ['with a newline', 'cs_1\n'],
    ['null', null],
  ])('externalRef rejects %s', (_name, value) => {
    expectInvalid(() => v.externalRef(value), 'external_ref');
  });
});

describe('plan', () => {
  it('accepts any text without control characters, up to 64 characters (not bytes)', () => {
    expect(v.plan('Pro Monthly')).toBe('Pro Monthly');
    expect(v.plan('Pro Monthly ✨')).toBe('Pro Monthly ✨');
    expect(v.plan('é'.repeat(64))).toHaveLength(64);
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['oversized', 'p'.repeat(65)],
    ['a line break', 'Pro\nMonthly'],
    ['a tab', 'Pro\tMonthly'],
    ['not a string', 3],
    ['null', null],
  ])('rejects %s', (_name, value) => {
    expectInvalid(() => v.plan(value), 'plan');
  });
});

describe('holdId', () => {
  it('accepts a lowercase UUID', () => {
    const id = '0b7e1c2a-5d1f-4c3b-9a8e-1234567890ab';
    expect(v.holdId(id)).toBe(id);
  });

  it.each([
    ['empty', ''],
    ['not a UUID', 'hold-1'],
    ['uppercase', '0B7E1C2A-5D1F-4C3B-9A8E-1234567890AB'],
    ['too short', '0b7e1c2a-5d1f-4c3b-9a8e-1234567890a'],
    ['with braces', '{0b7e1c2a-5d1f-4c3b-9a8e-1234567890ab}'],
    ['SQL', "' OR 1=1 --"],
    ['not a string', 1],
  ])('rejects %s', (_name, value) => {
    expectInvalid(() => v.holdId(value), 'hold_id');
  });
});

describe('currency', () => {
  it('accepts a configured currency', () => {
    expect(v.currency('USD', 'currency', ctx)).toBe('USD');
    expect(v.currency('EUR', 'upstream.currency', ctx)).toBe('EUR');
  });

  it.each([
    ['empty', ''],
    ['lowercase', 'usd'],
    ['unconfigured', 'GBP'],
    ['not ISO', 'DOLLARS'],
    ['a unit', 'CREDIT'],
    ['not a string', 840],
  ])('rejects %s', (_name, value) => {
    expectInvalid(() => v.currency(value, 'currency', ctx), 'currency');
  });
});

describe('bucket', () => {
  it('accepts a bucket, within `allowed` when given', () => {
    expect(v.bucket('SUBSCRIPTION')).toBe('SUBSCRIPTION');
    expect(v.bucket('BONUS', 'bucket', ['PURCHASED', 'BONUS'])).toBe('BONUS');
  });

  it('rejects a missing bucket and one not allowed', () => {
    expectInvalid(() => v.bucket(null), 'bucket');
    expectInvalid(() => v.bucket('SUBSCRIPTION', 'bucket', ['PURCHASED', 'BONUS']), 'bucket');
  });
});

describe('priority', () => {
  it('accepts small signed integers', () => {
    expect(v.priority(0)).toBe(0);
    expect(v.priority(-limits.priorityAbsMax)).toBe(-limits.priorityAbsMax);
    expect(v.priority(limits.priorityAbsMax)).toBe(limits.priorityAbsMax);
  });

  it.each([
    ['above the bound', limits.priorityAbsMax + 1],
    ['below the bound', -limits.priorityAbsMax - 1],
    ['fraction', 0.5],
    ['NaN', Number.NaN],
    ['bigint', 1n],
    ['string', '1'],
  ])('rejects %s', (_name, value) => {
    expectInvalid(() => v.priority(value), 'priority');
  });
});

describe('optionalTime', () => {
  it('passes null and undefined through as null, and keeps valid dates', () => {
    expect(v.optionalTime(undefined, 'expires_at')).toBeNull();
    expect(v.optionalTime(null, 'expires_at')).toBeNull();
    const d = new Date('2026-12-01T00:00:00Z');
    expect(v.optionalTime(d, 'expires_at')).toBe(d);
  });

  it('rejects an invalid date', () => {
    expectInvalid(() => v.optionalTime(new Date('nonsense'), 'expires_at'), 'expires_at');
    expectInvalid(() => v.optionalTime('2026-12-01' as unknown as Date, 'effective_at'), 'effective_at');
  });
});

describe('ttlMs', () => {
  it('accepts 0 (the default) only where allowed, and the bounds', () => {
    expect(v.ttlMs(0n, ctx, true)).toBe(0);
    expect(v.ttlMs(BigInt(limits.holdTtlMsMin), ctx, false)).toBe(limits.holdTtlMsMin);
    expect(v.ttlMs(BigInt(ctx.holdTtlMsMax), ctx, false)).toBe(ctx.holdTtlMsMax);
    expect(v.ttlMs(5_000, ctx, true)).toBe(5_000);
  });

  it.each([
    ['zero where not allowed', 0n, false],
    ['below the minimum', BigInt(limits.holdTtlMsMin - 1), true],
    ['above the maximum', BigInt(ctx.holdTtlMsMax + 1), true],
    ['negative', -1_000n, true],
    ['above int64', 2n ** 63n, true],
    ['fraction', 1_500.5, true],
  ])('rejects %s', (_name, value, zeroAllowed) => {
    expectInvalid(() => v.ttlMs(value, ctx, zeroAllowed), 'ttl_ms');
  });
});

describe('metadata', () => {
  it('accepts up to 16 keys within the byte limits, sorted', () => {
    expect(v.metadata(undefined)).toEqual({});
    expect(v.metadata(null)).toEqual({});
    const full: Record<string, string> = {};
    for (let i = 0; i < limits.metadataKeysMax; i += 1) full[`k${String(i).padStart(2, '0')}`] = 'v';
    expect(Object.keys(v.metadata(full))).toHaveLength(limits.metadataKeysMax);
    const edge = { ['k'.repeat(limits.metadataKeyBytesMax)]: 'v'.repeat(limits.metadataValueBytesMax) };
    expect(v.metadata(edge)).toEqual(edge);
    expect(Object.keys(v.metadata({ b: '1', a: '2' }))).toEqual(['a', 'b']);
  });

  it('rejects too many keys', () => {
    const tooMany: Record<string, string> = {};
    for (let i = 0; i <= limits.metadataKeysMax; i += 1) tooMany[`k${i}`] = 'v';
    expectInvalid(() => v.metadata(tooMany), 'metadata');
  });

  it('rejects empty and oversized keys (in bytes, not characters)', () => {
    expectInvalid(() => v.metadata({ '': 'v' }), 'metadata');
    expectInvalid(() => v.metadata({ ['k'.repeat(limits.metadataKeyBytesMax + 1)]: 'v' }), 'metadata');
    // 33 two-byte characters are 66 bytes.
    expectInvalid(() => v.metadata({ ['é'.repeat(33)]: 'v' }), 'metadata');
  });

  it('rejects oversized and non-string values, naming the key', () => {
    expectInvalid(() => v.metadata({ job: 'v'.repeat(limits.metadataValueBytesMax + 1) }), 'metadata.job');
    // 129 two-byte characters are 258 bytes.
    expectInvalid(() => v.metadata({ job: 'é'.repeat(129) }), 'metadata.job');
    expectInvalid(() => v.metadata({ job: 5 as unknown as string }), 'metadata.job');
  });
});

describe('upstream', () => {
  const ok = { amountMicros: 80_000n, currency: 'USD', requestId: 'pred_1', model: 'wavespeed-ai/x' };

  it('accepts a cost, and no cost at all', () => {
    expect(v.upstream(undefined, ctx)).toBeNull();
    expect(v.upstream(null, ctx)).toBeNull();
    expect(v.upstream(ok, ctx)).toEqual(ok);
    expect(v.upstream({ ...ok, amountMicros: 0n, requestId: '', model: '' }, ctx)).toEqual({
      amountMicros: 0n,
      currency: 'USD',
      requestId: '',
      model: '',
    });
  });

  it.each([
    ['a negative amount', { ...ok, amountMicros: -1n }, 'upstream.amount_micros'],
    ['an amount above the bound', { ...ok, amountMicros: limits.amountMicrosMax + 1n }, 'upstream.amount_micros'],
    ['a bad currency', { ...ok, currency: 'XXX' }, 'upstream.currency'],
    ['an empty currency', { ...ok, currency: '' }, 'upstream.currency'],
    ['a request id with spaces', { ...ok, requestId: 'pred 1' }, 'upstream.request_id'],
    ['an oversized model', { ...ok, model: 'm'.repeat(256) }, 'upstream.model'],
  ])('rejects %s', (_name, value, field) => {
    expectInvalid(() => v.upstream(value, ctx), field);
  });
});
