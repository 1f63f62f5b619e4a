import { afterAll, describe, expect, it } from 'vitest';
import { Bucket, createLedgerClient } from '../services/ledger/client/index.js';
import { alive, startTestSystem, type TestSystem } from './testing/npm-start.js';

// `npm start` stopped as a supervisor stops it: SIGTERM to the npm process itself. npm passes
// the signal to its script's process only; the script must therefore be the app (exec), not a
// shell or a tsx wrapper that would leave the app running.

describe('npm start', () => {
  let t: TestSystem | null = null;
  afterAll(async () => {
    await t?.close();
  });

  it('serves, and SIGTERM to the npm process stops every process it started, logging no error', async () => {
    // As in production: migrations as the owner, the ledger as the app role (so it has no
    // reason to warn about its role).
    t = await startTestSystem('start-e2e', { LEDGER_DRAIN_GRACE_MS: '3000' });
    const { system } = t;
    const admin = createLedgerClient(String(system.ready.ledger), t.tokenOf('admin'));
    await admin.grant({ idempotencyKey: 'start-e2e', userId: 'u-start', credits: 5n, bucket: Bucket.BUCKET_BONUS });
    expect((await admin.getBalance({ userId: 'u-start' })).available).toBe(5n);
    admin.close();

    const started = system.descendants();
    expect(started.length).toBeGreaterThan(0);
    const stopAt = Date.now();
    system.child.kill('SIGTERM');
    const exit = await system.exited;
    // Within the drain grace (3 s) plus process exit.
    expect(Date.now() - stopAt).toBeLessThan(8_000);
    expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);
    for (let i = 0; i < 50 && started.some(alive); i += 1) await new Promise((r) => setTimeout(r, 100));
    expect(started.filter(alive)).toEqual([]);
    expect(system.lines.some((l) => l.msg === 'stopped')).toBe(true);
    // pino levels: 40 warn, 50 error, 60 fatal.
    expect(system.lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
    expect(system.other.filter((l) => /error/i.test(l))).toEqual([]);
  });
});
