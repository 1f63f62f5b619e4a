import { describe, expect, it } from 'vitest';
import { parseLedgerConfig } from './config.js';

const credential = (name: string, token: string, role = 'worker') => ({ name, token, role });
const env = (credentials: unknown[], extra: Record<string, string> = {}) => ({
  DATABASE_URL: 'postgres://ledger@127.0.0.1:5432/ledger',
  LEDGER_CREDENTIALS: JSON.stringify(credentials),
  ...extra,
});

describe('ledger configuration', () => {
  it('accepts distinct credentials and applies the defaults', () => {
    const config = parseLedgerConfig(env([credential('worker-1', 'w'.repeat(16)), credential('payments', 'p'.repeat(16), 'payments')]));
    expect(config.credentials.map((c) => c.name)).toEqual(['worker-1', 'payments']);
    expect(config.holdLifetimeMsMax).toBe(21_600_000);
    expect(config.grpcAddr).toBe('127.0.0.1:50051');
  });

  it('refuses two credentials with one name: the name is the actor recorded on entries', () => {
    expect(() => parseLedgerConfig(env([credential('svc', 'a'.repeat(16)), credential('svc', 'b'.repeat(16))]))).toThrow(
      /LEDGER_CREDENTIALS\.1\.name: "svc" is used by two credentials/,
    );
  });

  it("refuses names that take the ledger's own actor names", () => {
    for (const name of ['ledger.sweeper', 'LEDGER.admin', 'ledger.x']) {
      expect(() => parseLedgerConfig(env([credential(name, 'a'.repeat(16))]))).toThrow(/names starting with "ledger\." are the ledger's own actors/);
    }
    expect(() => parseLedgerConfig(env([credential('ledger-ops', 'a'.repeat(16))]))).not.toThrow();
  });

  it('refuses a token shared by two credentials, and short tokens', () => {
    expect(() => parseLedgerConfig(env([credential('a', 't'.repeat(16)), credential('b', 't'.repeat(16))]))).toThrow(/reuses another credential's token/);
    expect(() => parseLedgerConfig(env([credential('a', 'short')]))).toThrow(/at least 16 characters/);
  });

  it('refuses a hold TTL above the hold lifetime', () => {
    expect(() =>
      parseLedgerConfig(env([credential('a', 't'.repeat(16))], { LEDGER_HOLD_TTL_MS_MAX: '7200000', LEDGER_HOLD_LIFETIME_MS_MAX: '3600000' })),
    ).toThrow(/LEDGER_HOLD_TTL_MS_MAX exceeds LEDGER_HOLD_LIFETIME_MS_MAX/);
  });
  it('gives the readers a pool of their own with a statement timeout, and caps StreamJournal calls', () => {
    const defaults = parseLedgerConfig(env([credential('a', 't'.repeat(16))]));
    expect(defaults.dbReadPoolSize).toBe(4);
    expect(defaults.dbReadStatementTimeoutMs).toBe(5_000);
    expect(defaults.streamsMax).toBe(64);
    const set = parseLedgerConfig(
      env([credential('a', 't'.repeat(16))], { LEDGER_DB_READ_POOL_SIZE: '6', LEDGER_DB_READ_STATEMENT_TIMEOUT_MS: '2500', LEDGER_STREAMS_MAX: '50' }),
    );
    expect([set.dbReadPoolSize, set.dbReadStatementTimeoutMs, set.streamsMax]).toEqual([6, 2_500, 50]);
  });

  it('refuses read pool sizes, read timeouts and stream caps out of bounds, naming the variable', () => {
    const cases: [string, string][] = [
      ['LEDGER_DB_READ_POOL_SIZE', '0'],
      ['LEDGER_DB_READ_POOL_SIZE', '101'],
      ['LEDGER_DB_READ_STATEMENT_TIMEOUT_MS', '99'],
      ['LEDGER_DB_READ_STATEMENT_TIMEOUT_MS', '3600001'],
      ['LEDGER_STREAMS_MAX', '0'],
      ['LEDGER_STREAMS_MAX', '10001'],
      ['LEDGER_STREAMS_MAX', 'many'],
    ];
    for (const [name, value] of cases) {
      expect(() => parseLedgerConfig(env([credential('a', 't'.repeat(16))], { [name]: value })), `${name}=${value}`).toThrow(new RegExp(`${name}:`));
    }
  });
});
