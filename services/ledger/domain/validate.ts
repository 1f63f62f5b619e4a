import { invalid } from './errors.js';
import { limits, systemKeyPrefix } from './limits.js';
import type { Bucket, Metadata, UpstreamCost } from './types.js';

/**
 * Field validators shared by the commands. Each names the field it rejects, so a caller can
 * tell exactly what to fix; none of them touches state.
 */

/** What validation needs to know about the server: its currencies and TTL bounds. */
export interface ValidationContext {
  currencies: ReadonlySet<string>;
  holdTtlMsDefault: number;
  holdTtlMsMax: number;
}

const printableNoSpace = /^[\x21-\x7e]+$/;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function boundedString(field: string, value: unknown, lengthMax: number): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(field, 'is required');
  if (value.length > lengthMax) throw invalid(field, `is longer than ${lengthMax} characters`);
  if (!printableNoSpace.test(value)) {
    throw invalid(field, 'must be printable ASCII without spaces');
  }
  return value;
}

export function idempotencyKey(value: unknown): string {
  const key = boundedString('idempotency_key', value, limits.idempotencyKeyLengthMax);
  if (key.startsWith(systemKeyPrefix)) {
    throw invalid('idempotency_key', `the prefix "${systemKeyPrefix}" is reserved for the ledger`);
  }
  return key;
}

export function userId(value: unknown): string {
  return boundedString('user_id', value, limits.userIdLengthMax);
}

export function externalRef(value: unknown): string {
  return boundedString('external_ref', value, limits.externalRefLengthMax);
}

/** A plan name as shown to people ("Pro Monthly ✨"): any text without control characters. */
export function plan(value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid('plan', 'is required');
  if ([...value].length > 64) throw invalid('plan', 'is longer than 64 characters');
  if (/\p{Cc}/u.test(value)) throw invalid('plan', 'must not contain control characters (line breaks, tabs)');
  return value;
}

export function holdId(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid('hold_id', 'is required');
  if (!uuidPattern.test(value)) throw invalid('hold_id', 'must be a hold id returned by Reserve');
  return value;
}

function integer(field: string, value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw invalid(field, 'must be an integer');
}

/** A positive amount of whole credits, at most limits.creditsMax. */
export function credits(value: unknown, field = 'credits'): bigint {
  const amount = integer(field, value);
  if (amount <= 0n) throw invalid(field, `must be positive (got ${amount})`);
  if (amount > limits.creditsMax) throw invalid(field, `must be at most ${limits.creditsMax}`);
  return amount;
}

/** Money in micros; `positive` rejects zero too. */
export function amountMicros(value: unknown, field: string, positive: boolean): bigint {
  const amount = integer(field, value);
  if (amount < 0n || (positive && amount === 0n)) {
    throw invalid(field, `must be ${positive ? 'positive' : 'zero or more'} (got ${amount})`);
  }
  if (amount > limits.amountMicrosMax) throw invalid(field, `must be at most ${limits.amountMicrosMax}`);
  return amount;
}

export function currency(value: unknown, field: string, ctx: ValidationContext): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(field, 'is required');
  if (!ctx.currencies.has(value)) {
    throw invalid(field, `"${value}" is not one of ${[...ctx.currencies].join(', ')}`);
  }
  return value;
}

export function bucket(value: Bucket | null, field = 'bucket', allowed?: readonly Bucket[]): Bucket {
  if (value === null) throw invalid(field, 'is required (SUBSCRIPTION, BONUS or PURCHASED)');
  if (allowed && !allowed.includes(value)) throw invalid(field, `must be one of ${allowed.join(', ')}`);
  return value;
}

export function priority(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalid('priority', 'must be an integer');
  if (Math.abs(value) > limits.priorityAbsMax) {
    throw invalid('priority', `must be between -${limits.priorityAbsMax} and ${limits.priorityAbsMax}`);
  }
  return value;
}

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: google.protobuf.Timestamp's range. */
const timeMinMs = Date.parse('0001-01-01T00:00:00.000Z');
const timeMaxMs = Date.parse('9999-12-31T23:59:59.999Z');

export function optionalTime(value: Date | undefined | null, field: string): Date | null {
  if (value === undefined || value === null) return null;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw invalid(field, 'is not a valid time');
  // Outside this range the ISO form changes (+010000-…) and PostgreSQL would reject the batch.
  if (value.getTime() < timeMinMs || value.getTime() > timeMaxMs) {
    throw invalid(field, 'must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z');
  }
  return value;
}

/**
 * Text stored in jsonb columns may not contain U+0000: PostgreSQL rejects it, and that would
 * fail the whole batch the command rides in.
 */
export function withoutNul(field: string, value: string): string {
  if (value.includes('\u0000')) throw invalid(field, 'must not contain the NUL character (U+0000)');
  return value;
}

/** A TTL in ms: 0 means the default; otherwise within [holdTtlMsMin, holdTtlMsMax]. */
export function ttlMs(value: unknown, ctx: ValidationContext, zeroAllowed: boolean): number {
  const ttl = integer('ttl_ms', value);
  if (ttl === 0n && zeroAllowed) return 0;
  if (ttl < BigInt(limits.holdTtlMsMin) || ttl > BigInt(ctx.holdTtlMsMax)) {
    throw invalid('ttl_ms', `must be between ${limits.holdTtlMsMin} and ${ctx.holdTtlMsMax} (got ${ttl})`);
  }
  return Number(ttl);
}

export function metadata(value: Record<string, string> | undefined | null): Metadata {
  if (value === undefined || value === null) return {};
  const keys = Object.keys(value);
  if (keys.length > limits.metadataKeysMax) {
    throw invalid('metadata', `has ${keys.length} keys; at most ${limits.metadataKeysMax}`);
  }
  const clean: Metadata = {};
  for (const key of keys.sort()) {
    const v = value[key];
    if (key.length === 0 || Buffer.byteLength(key) > limits.metadataKeyBytesMax) {
      throw invalid('metadata', `key "${key.slice(0, 80)}" must be 1–${limits.metadataKeyBytesMax} bytes`);
    }
    if (key.includes('\u0000')) throw invalid('metadata', 'keys must not contain the NUL character (U+0000)');
    if (typeof v !== 'string') throw invalid(`metadata.${key}`, 'must be a string');
    withoutNul(`metadata.${key}`, v);
    if (Buffer.byteLength(v) > limits.metadataValueBytesMax) {
      throw invalid(`metadata.${key}`, `is longer than ${limits.metadataValueBytesMax} bytes`);
    }
    clean[key] = v;
  }
  return clean;
}

export interface RawUpstream {
  amountMicros: bigint;
  currency: string;
  requestId: string;
  model: string;
}

export function upstream(value: RawUpstream | undefined | null, ctx: ValidationContext): UpstreamCost | null {
  if (value === undefined || value === null) return null;
  const cost: UpstreamCost = {
    amountMicros: amountMicros(value.amountMicros, 'upstream.amount_micros', false),
    currency: currency(value.currency, 'upstream.currency', ctx),
    requestId: value.requestId === '' ? '' : boundedString('upstream.request_id', value.requestId, 255),
    model: value.model === '' ? '' : boundedString('upstream.model', value.model, 255),
  };
  return cost;
}
