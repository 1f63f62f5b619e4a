/**
 * The errors a ledger caller may see. Anything else thrown inside the ledger is a bug and
 * reaches the client as INTERNAL with a generic message (see grpc/errors.ts).
 */
export type LedgerErrorCode =
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED';

/** Machine-readable reasons of FAILED_PRECONDITION, sent as google.rpc.ErrorInfo.reason. */
export type RefusalReason =
  | 'INSUFFICIENT_CREDITS'
  | 'HOLD_EXPIRED'
  | 'HOLD_CLOSED'
  | 'HOLD_LIFETIME_EXCEEDED'
  | 'ACCOUNT_LIMIT_REACHED'
  | 'CAPTURE_EXCEEDS_HOLD'
  | 'REFUND_EXCEEDS_PAYMENT'
  | 'ALREADY_REFUNDED'
  | 'ALREADY_REVERSED'
  | 'NOT_REVERSIBLE'
  | 'LOT_REFUNDED'
  | 'LOT_REVERSED'
  | 'HOLD_OPEN'
  | 'NOTHING_TO_EXPIRE';

export class LedgerError extends Error {
  override readonly name = 'LedgerError';

  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    readonly reason?: RefusalReason,
    /** For INVALID_ARGUMENT: the request field at fault, as its path in the proto (`upstream.amount_micros`). */
    readonly field?: { path: string; description: string },
  ) {
    super(message);
  }
}

/** A malformed request: the message names the field, and the error carries it for BadRequest. */
export function invalid(field: string, problem: string): LedgerError {
  return new LedgerError('INVALID_ARGUMENT', `${field}: ${problem}`, undefined, { path: field, description: problem });
}

export function refused(reason: RefusalReason, message: string): LedgerError {
  return new LedgerError('FAILED_PRECONDITION', message, reason);
}

export function notFound(field: string, problem: string): LedgerError {
  return new LedgerError('NOT_FOUND', `${field}: ${problem}`);
}
