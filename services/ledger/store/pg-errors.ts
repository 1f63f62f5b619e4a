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

/** Socket errors whose outcome is unknown to us: the statement may or may not have run. */
const socketCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ENOTCONN']);

/** Prisma's codes for an unreachable database, a closed connection and an exhausted pool. */
const prismaCodes = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);

/**
 * Connection trouble, shutdown, timeouts or resource limits on the database side: the caller
 * should retry (with the same idempotency key for a write), so these are UNAVAILABLE, never
 * INTERNAL, which is kept for bugs. Checked on the error and on its cause (Prisma's driver
 * adapter wraps pg's errors).
 */
export function isUnavailable(error: unknown): boolean {
  for (let e = error as { code?: unknown; message?: unknown; cause?: unknown } | null, depth = 0; e && depth < 4; depth += 1) {
    const code = sqlState(e);
    if (code !== undefined) {
      // 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown,
      // statement or lock timeout: 57014 is query_canceled), 55P03 lock_not_available.
      if (code.startsWith('08') || code.startsWith('53') || code.startsWith('57') || code === '55P03') return true;
      if (socketCodes.has(code) || prismaCodes.has(code)) return true;
    }
    const message = typeof e.message === 'string' ? e.message : '';
    if (
      /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Connection terminated|not queryable|timeout exceeded when trying to connect|Query read timeout|connection is closed|Can't reach database server/i.test(
        message,
      )
    ) {
      return true;
    }
    e = (e.cause ?? null) as typeof e;
  }
  return false;
}

/**
 * PostgreSQL cancelled the statement because it ran past the session's statement_timeout
 * (57014 is also what a cancel request gives; only the message tells the two apart).
 */
export function isStatementTimeout(error: unknown): boolean {
  const e = error as { message?: unknown } | null;
  return sqlState(error) === '57014' && typeof e?.message === 'string' && /statement timeout/i.test(e.message);
}
