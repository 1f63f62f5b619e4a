/**
 * Classifies PostgreSQL failures by SQLSTATE: which ones a batch may retry invisibly, and which
 * mean the database is unreachable (UNAVAILABLE to callers) rather than a bug.
 */
function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: { originalCode?: unknown } } | null;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.originalCode === 'string') return e.cause.originalCode;
  return undefined;
}

/** Serialization failure or deadlock: the batch can run again from the start. */
export function isRetriable(error: unknown): boolean {
  const code = sqlState(error);
  return code === '40001' || code === '40P01';
}

/** Connection trouble, shutdown or resource limits on the database side. */
export function isUnavailable(error: unknown): boolean {
  const code = sqlState(error);
  if (code !== undefined && (code.startsWith('08') || code.startsWith('53') || code.startsWith('57P'))) return true;
  const message = (error as Error | null)?.message ?? '';
  return /ECONNREFUSED|ECONNRESET|Connection terminated|timeout exceeded when trying to connect/i.test(message);
}
