import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { Any } from '../../generated/proto/google/protobuf/any.js';
import { BadRequest, ErrorInfo } from '../../generated/proto/google/rpc/error_details.js';
import { Status } from '../../generated/proto/google/rpc/status.js';
import type { Logger } from '../../lib/logger.js';
import { errorDomain } from '../client/error-reason.js';
import { LedgerError } from '../domain/errors.js';
import { isUnavailable } from '../store/pg-errors.js';


const codes: Record<LedgerError['code'], status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
};

/**
 * The one place that maps errors to gRPC status. Known errors keep their code and message;
 * refusals carry a google.rpc.ErrorInfo with the reason, and malformed requests a
 * google.rpc.BadRequest naming the field (both in `grpc-status-details-bin`, as google.rpc.Status).
 * Anything else is a bug: the client sees INTERNAL and a generic message, the log gets the stack.
 */
export function toServiceError(error: unknown, log: Logger, method: string): Partial<ServiceError> {
  if (!(error instanceof LedgerError) && isUnavailable(error)) {
    // A read (or a write outside the batch path) that lost the database: retriable, not a bug.
    log.warn({ method, error: (error as Error).message }, 'database unavailable');
    return { code: status.UNAVAILABLE, details: 'the ledger database is unavailable; retry', metadata: new Metadata() };
  }
  if (!(error instanceof LedgerError)) {
    log.error({ err: error, method }, 'unexpected error');
    return { code: status.INTERNAL, details: 'internal error; the ledger logged the cause', metadata: new Metadata() };
  }
  const code = codes[error.code];
  const metadata = new Metadata();
  const details: Any[] = [];
  if (error.reason) {
    const info = ErrorInfo.encode({ reason: error.reason, domain: errorDomain, metadata: {} }).finish();
    details.push({ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) });
  }
  if (error.field) {
    const badRequest = BadRequest.encode({
      fieldViolations: [{ field: error.field.path, description: error.field.description, reason: '', localizedMessage: undefined }],
    }).finish();
    details.push({ typeUrl: 'type.googleapis.com/google.rpc.BadRequest', value: Buffer.from(badRequest) });
  }
  if (details.length > 0) {
    metadata.set('grpc-status-details-bin', Buffer.from(Status.encode({ code, message: error.message, details }).finish()));
  }
  return { code, details: error.message, metadata };
}
