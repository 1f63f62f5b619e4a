import { createHash } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import type { Role } from '../client/roles.js';
import { LedgerError } from '../domain/errors.js';

export type { Role };

export interface Credential {
  name: string;
  token: string;
  role: Role;
}

export interface Principal {
  /** Recorded as the actor of every entry this caller writes. */
  name: string;
  role: Role;
}

const reads = ['GetBalance', 'Quote', 'GetEntry', 'ListEntries', 'StreamJournal'] as const;
/** AuditService (audit.proto): the auditor's methods; admin has them too. */
const audit = ['VerifyJournal', 'TrialBalance', 'ReconcileStripe', 'ReconcileWavespeed'] as const;

/** What each role may call (ledger README §6). Admin may call everything; Grant and Reverse are admin-only. */
const allowed: Record<Exclude<Role, 'admin'>, ReadonlySet<string>> = {
  payments: new Set(['Purchase', 'RenewSubscription', 'Refund', 'ReinstateDispute', ...reads]),
  worker: new Set(['Reserve', 'ExtendHold', 'Capture', 'Release', 'Consume', ...reads]),
  auditor: new Set([...reads, ...audit]),
};

const digest = (token: string): string => createHash('sha256').update(token).digest('hex');

/**
 * Bearer-token authentication. Tokens are kept only as SHA-256 digests and looked up by
 * digest, so neither memory dumps nor comparison timing reveal them.
 */
export class Authenticator {
  readonly #byDigest = new Map<string, Principal>();

  constructor(credentials: readonly Credential[]) {
    for (const c of credentials) {
      const key = digest(c.token);
      if (this.#byDigest.has(key)) throw new Error(`credential ${c.name}: token is not unique`);
      this.#byDigest.set(key, { name: c.name, role: c.role });
    }
  }

  authenticate(metadata: Metadata): Principal {
    const header = metadata.get('authorization')[0];
    // The scheme name is case-insensitive (RFC 9110 §11.1, RFC 6750 §2.1): "bearer" is fine.
    const match = typeof header === 'string' ? /^bearer +(.+?) *$/i.exec(header) : null;
    if (!match) {
      throw new LedgerError('UNAUTHENTICATED', 'authorization: expected "Bearer <token>" metadata');
    }
    const principal = this.#byDigest.get(digest(match[1]!));
    if (!principal) throw new LedgerError('UNAUTHENTICATED', 'authorization: unknown credential');
    return principal;
  }

  authorize(principal: Principal, method: string): void {
    if (principal.role === 'admin') return;
    if (!allowed[principal.role].has(method)) {
      throw new LedgerError('PERMISSION_DENIED', `role ${principal.role} (${principal.name}) may not call ${method}`);
    }
  }
}
