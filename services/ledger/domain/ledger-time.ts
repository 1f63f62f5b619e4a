/**
 * Ledger time (ledger README §3): this process's clock, but never behind the `recorded_at` of
 * the last entry any process recorded (the journal head). Writes record entries at it, holds
 * expire by it, reads decide effective and expired lots by it, sweepers select what is due by
 * it. This is its one definition, in TypeScript and, for queries, in SQL.
 */
export function ledgerNow(clockNow: Date, headRecordedAt: Date | null | undefined): Date {
  return headRecordedAt && headRecordedAt.getTime() > clockNow.getTime() ? headRecordedAt : clockNow;
}

/** Ledger time in SQL, with the process's clock as the query parameter `$${param}`. */
export function ledgerNowSql(param: number): string {
  return `GREATEST($${param}::timestamptz, (SELECT recorded_at FROM journal_head WHERE id = 1))`;
}
