import type { Metadata } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo } from '../../generated/proto/google/rpc/error_details.js';
import { Status } from '../../generated/proto/google/rpc/status.js';

/** The `domain` of every google.rpc.ErrorInfo the ledger sends. */
export const errorDomain = 'credits.ledger.v1';

function statusDetails(error: { metadata?: Metadata }) {
  const raw = error.metadata?.get('grpc-status-details-bin')[0];
  return Buffer.isBuffer(raw) ? Status.decode(raw).details : [];
}

/** Reads the ErrorInfo reason (`INSUFFICIENT_CREDITS`, …) from a ledger gRPC error. */
export function errorReason(error: { metadata?: Metadata }): string | undefined {
  const any = statusDetails(error).find((d) => d.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo');
  return any ? ErrorInfo.decode(any.value).reason : undefined;
}

/** The fields an INVALID_ARGUMENT names (google.rpc.BadRequest): proto paths and why each is bad. */
export function fieldViolations(error: { metadata?: Metadata }): { field: string; description: string }[] {
  const any = statusDetails(error).find((d) => d.typeUrl === 'type.googleapis.com/google.rpc.BadRequest');
  if (!any) return [];
  return BadRequest.decode(any.value).fieldViolations.map((v) => ({ field: v.field, description: v.description }));
}
