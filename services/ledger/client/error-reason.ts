import type { Metadata } from '@grpc/grpc-js';
import { ErrorInfo } from '../../generated/proto/google/rpc/error_details.js';
import { Status } from '../../generated/proto/google/rpc/status.js';

/** The `domain` of every google.rpc.ErrorInfo the ledger sends. */
export const errorDomain = 'credits.ledger.v1';

/** Reads the ErrorInfo reason (`INSUFFICIENT_CREDITS`, …) from a ledger gRPC error. */
export function errorReason(error: { metadata?: Metadata }): string | undefined {
  const raw = error.metadata?.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(raw)) return undefined;
  const decoded = Status.decode(raw);
  for (const any of decoded.details) {
    if (any.typeUrl.endsWith('google.rpc.ErrorInfo')) return ErrorInfo.decode(any.value).reason;
  }
  return undefined;
}
