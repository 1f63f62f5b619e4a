import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { Bucket, errorReason, limits, RefundReason } from './client/index.js';
import { settle, type Outcome } from './testing/call-outcome.js';
import { startTestLedger, type TestLedger } from './testing/ledger-harness.js';

const started: TestLedger[] = [];
afterAll(async () => {
  for (const t of started.reverse()) await t.close();
});

const codeOf = (o: Outcome<unknown>) => (o.ok ? 'OK' : `${status[o.error.code]} ${errorReason(o.error) ?? ''}`.trim());

describe('account totals never overflow int64', () => {
  it('maximal upstream costs fill the platform cost account to the limit, then refuse ACCOUNT_LIMIT_REACHED; nothing is INTERNAL', async () => {
    const t = await startTestLedger();
    started.push(t);
    const perCall = limits.amountMicrosMax;
    const fit = limits.accountTotalMax / perCall; // 9,223 calls fit; the next one would overflow.
    await t.client.admin.grant({ idempotencyKey: 'g', userId: 'u-max', credits: fit + 1_000n, bucket: Bucket.BUCKET_BONUS });
    const outcomes: Outcome<unknown>[] = [];
    const wave = 400;
    for (let sent = 0n; sent < fit + 50n; ) {
      const n = Number(fit + 50n - sent < BigInt(wave) ? fit + 50n - sent : BigInt(wave));
      const calls = Array.from({ length: n }, (_, i) =>
        settle(
          t.client.worker.consume({
            idempotencyKey: `c-${sent + BigInt(i)}`,
            userId: 'u-max',
            credits: 1n,
            upstream: { amountMicros: perCall, currency: 'USD', requestId: `p-${sent + BigInt(i)}`, model: 'm' },
          }),
        ),
      );
      outcomes.push(...(await Promise.all(calls)));
      sent += BigInt(n);
    }
    const counts = new Map<string, number>();
    for (const o of outcomes) counts.set(codeOf(o), (counts.get(codeOf(o)) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({ OK: Number(fit), 'FAILED_PRECONDITION ACCOUNT_LIMIT_REACHED': 50 });
    const refused = outcomes.find((o) => !o.ok);
    if (refused && !refused.ok) expect(refused.error.details).toMatch(/account upstream\.wavespeed\.(cost|payable)\.USD: \w+ would exceed 9223372036854775807/);
    // The account sits at fit × 10^15; spending without an upstream cost still works.
    const { rows } = await t.pool.query(`SELECT debits_posted::text FROM accounts WHERE code = 'upstream.wavespeed.cost.USD'`);
    expect(BigInt(rows[0].debits_posted)).toBe(fit * perCall);
    await t.client.worker.consume({ idempotencyKey: 'no-cost', userId: 'u-max', credits: 1n });
    await t.expectInvariants();
  });
});

describe('a ledger configured with fewer currencies than the journal holds', () => {
  it('spends and refunds lots in the other currency; refuses new amounts in it', async () => {
    const wide = await startTestLedger({ options: { currencies: ['USD', 'EUR'] } });
    const narrow = await startTestLedger({ db: wide.db, options: { currencies: ['USD'] } });
    started.push(wide, narrow);
    await wide.client.payments.purchase({
      idempotencyKey: 'p-eur',
      userId: 'u-eur',
      credits: 10n,
      bucket: Bucket.BUCKET_PURCHASED,
      amountMicros: 5_000_000n,
      currency: 'EUR',
      externalRef: 'pi_eur',
    });
    const spent = await settle(narrow.client.worker.consume({ idempotencyKey: 'c-eur', userId: 'u-eur', credits: 4n }));
    expect(codeOf(spent)).toBe('OK');
    const refund = await settle(narrow.client.payments.refund({ idempotencyKey: 'r-eur', externalRef: 'pi_eur', amountMicros: 1_000_000n, reason: RefundReason.REFUND_REASON_REFUND }));
    expect(codeOf(refund)).toBe('OK');
    const newEur = await settle(
      narrow.client.payments.purchase({
        idempotencyKey: 'p-eur-2',
        userId: 'u-eur',
        credits: 1n,
        bucket: Bucket.BUCKET_PURCHASED,
        amountMicros: 1_000_000n,
        currency: 'EUR',
        externalRef: 'pi_eur_2',
      }),
    );
    expect(codeOf(newEur)).toBe('INVALID_ARGUMENT');
    await narrow.expectInvariants();
  });
});
