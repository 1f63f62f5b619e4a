/** The roles a ledger credential can have; each decides which RPCs its caller may use. */
export const roles = ['payments', 'worker', 'auditor', 'admin'] as const;

export type Role = (typeof roles)[number];
