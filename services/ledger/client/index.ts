// The ledger's public surface for other services: its gRPC client, the error-reason helper,
// the role names, its limits and the generated request/response types. Nothing else under
// services/ledger/ may be imported from outside it (`npm run lint` checks).
export {
  createLedgerClient,
  ledgerClientTlsFromEnv,
  requestTypes,
  type CallOptions,
  type ClientTls,
  type LedgerApi,
  type LedgerClient,
  type MethodName,
} from './ledger-client.js';
export { errorDomain, errorReason, fieldViolations } from './error-reason.js';
export { roles, type Role } from './roles.js';
export { limits } from '../domain/limits.js';
export * from '../../generated/proto/credits/ledger/v1/ledger.js';
