import { describe, expect, it } from 'vitest';
import { loadCatalog, parseCatalog } from './catalog.js';

describe('catalog file', () => {
  it('the default catalog has the seed Studio Pack (500 credits, $299.99), both lootboxes and a monthly plan', () => {
    const c = loadCatalog(undefined, 'UTC', 'x'.repeat(32));
    expect(c.product('studio-pack')).toMatchObject({ kind: 'package', name: 'Studio Pack', credits: 500n, priceCents: 29999n });
    expect(c.lootboxes.map((l) => l.name)).toEqual(['Weekend Flash Sale', 'Mid-Month Mega Deal']);
    expect(c.plans.length).toBeGreaterThan(0);
    expect(c.currency).toBe('usd');
  });

  it('rejects bad files with every problem named', () => {
    const bad = {
      currency: 'USD',
      packages: [{ id: 'Studio Pack', name: 'x', credits: 0, priceCents: 1.5 }],
      lootboxes: [{ id: 'box', name: 'b', priceCents: 1, credits: { min: 5, max: 1 }, window: { kind: 'monthly', startDay: 17, startTime: '00:00', endDay: 15, endTime: '25:00' } }],
      plans: [{ id: 'box', name: 'dup', monthlyCredits: 1, priceCents: 1 }],
      extra: true,
    };
    let message = '';
    try {
      parseCatalog(bad, 'UTC', 'x'.repeat(32));
    } catch (error) {
      message = (error as Error).message;
    }
    for (const part of ['currency', 'packages.0.id', 'packages.0.credits', 'packages.0.priceCents', 'lootboxes.0.credits', 'lootboxes.0.window', 'extra']) {
      expect(message).toContain(part);
    }
    expect(() => parseCatalog({ currency: 'usd', packages: [{ id: 'a', name: 'A', credits: 1, priceCents: 1 }], lootboxes: [], plans: [{ id: 'a', name: 'B', monthlyCredits: 1, priceCents: 1 }] }, 'UTC', undefined)).toThrow(/used twice/);
  });
});
