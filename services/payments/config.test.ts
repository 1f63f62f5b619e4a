import { describe, expect, it } from 'vitest';
import { parsePaymentsConfig } from './config.js';

const good = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/credits',
  LEDGER_TOKEN: 'payments-token-0123456789',
  STRIPE_SECRET_KEY: 'sk_test_abc123',
  STRIPE_WEBHOOK_SECRET: 'whsec_abc123',
  AUTH_JWT_SECRET: 'x'.repeat(32),
};

describe('payments configuration', () => {
  it('has defaults for everything but the secrets', () => {
    const c = parsePaymentsConfig(good);
    expect(c).toMatchObject({ httpAddr: '127.0.0.1:8080', ledgerAddr: '127.0.0.1:50051', saleTimeZone: 'UTC', stripeApiUrl: undefined, catalogFile: undefined });
  });

  it('names every missing or bad variable at once', () => {
    let message = '';
    try {
      parsePaymentsConfig({ DATABASE_URL: 'not a url', STRIPE_SECRET_KEY: 'pk_test_public', SALE_TIME_ZONE: 'Mars/Olympus', PAYMENTS_HTTP_ADDR: 'localhost', PAYMENTS_RETRY_BASE_MS: '5000', PAYMENTS_RETRY_MAX_MS: '10' });
    } catch (error) {
      message = (error as Error).message;
    }
    for (const name of ['DATABASE_URL', 'LEDGER_TOKEN', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', 'AUTH_JWT_SECRET', 'SALE_TIME_ZONE', 'PAYMENTS_HTTP_ADDR']) {
      expect(message).toContain(name);
    }
  });
});
