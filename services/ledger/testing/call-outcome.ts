import type { ServiceError } from '@grpc/grpc-js';
import { errorReason } from '../client/error-reason.js';

/** A gRPC call's result or error, so tests can assert on refusals without try/catch. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ServiceError };

export async function settle<T>(p: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error: error as ServiceError };
  }
}

/** The status code and ErrorInfo reason of a refused call; throws if the call succeeded. */
export function refusal(o: Outcome<unknown>): { code: number; reason: string | undefined } {
  if (o.ok) throw new Error(`expected a refusal, got ${JSON.stringify(o.value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  return { code: o.error.code, reason: errorReason(o.error) };
}
