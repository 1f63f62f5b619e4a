import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseCatalog } from './catalog.js';
import { drawCredits, seedCommitment, windowSeed } from './fair-draw.js';

const secret = 'test-lootbox-secret-0123456789abcdef';
const file = {
  currency: 'usd',
  packages: [{ id: 'studio-pack', name: 'Studio Pack', credits: 500, priceCents: 29999 }],
  lootboxes: [
    {
      id: 'weekend-flash-sale',
      name: 'Weekend Flash Sale',
      priceCents: 4999,
      credits: { min: 80, max: 200 },
      window: { kind: 'weekly', startDay: 'friday', startTime: '18:00', endDay: 'sunday', endTime: '23:00' },
    },
  ],
  plans: [],
};

/** A verifier written from the published description alone (fair-draw.ts's comment). */
function verifierDraw(seedHex: string, sessionId: string, min: number, max: number): number {
  const n = BigInt(max - min + 1);
  const limit = (1n << 64n) - ((1n << 64n) % n);
  for (let i = 0; ; i += 1) {
    const v = createHmac('sha256', Buffer.from(seedHex, 'hex')).update(`${sessionId}:${i}`).digest().readBigUInt64BE(0);
    if (v < limit) return min + Number(v % n);
  }
}

describe('provably fair lootbox draws', () => {
  it('the commitment is published before the window opens and the seed only once it has closed', () => {
    const catalog = parseCatalog(file, 'UTC', secret);
    const box = catalog.lootboxes[0]!;
    const opensAt = new Date('2026-11-27T18:00:00.000Z');
    const before = catalog.fairness(box, opensAt, new Date('2026-11-27T17:00:00.000Z'))!;
    expect(before.serverSeed).toBeNull();
    expect(before.serverSeedHash).toMatch(/^[0-9a-f]{64}$/);
    expect(catalog.fairness(box, opensAt, new Date('2026-11-29T22:59:59.999Z'))!.serverSeed).toBeNull();
    const after = catalog.fairness(box, opensAt, new Date('2026-11-29T23:00:00.000Z'))!;
    expect(after.serverSeedHash).toBe(before.serverSeedHash);
    // Anyone checks the revealed seed against the commitment published earlier…
    expect(createHash('sha256').update(Buffer.from(after.serverSeed!, 'hex')).digest('hex')).toBe(before.serverSeedHash);
    // …and re-derives every draw of the window from it and the session ids.
    const sessions = Array.from({ length: 200 }, (_, i) => `cs_test_${i.toString(36).padStart(6, '0')}`);
    for (const id of sessions) {
      expect(catalog.lootboxCredits(box, id, opensAt)).toBe(BigInt(verifierDraw(after.serverSeed!, id, 80, 200)));
    }
    // Not a window start: no commitment.
    expect(catalog.fairness(box, new Date('2026-11-27T18:00:00.001Z'), new Date('2026-12-01T00:00:00Z'))).toBeNull();
  });

  it('draws are deterministic per session, differ across windows, and cover the range evenly', () => {
    const seedA = windowSeed(secret, 'box', new Date('2026-11-27T18:00:00.000Z'));
    const seedB = windowSeed(secret, 'box', new Date('2026-12-04T18:00:00.000Z'));
    expect(seedA).not.toBe(seedB);
    expect(seedCommitment(seedA)).not.toBe(seedCommitment(seedB));
    expect(drawCredits(seedA, 'cs_1', 1n, 6n)).toBe(drawCredits(seedA, 'cs_1', 1n, 6n));
    const counts = new Map<bigint, number>();
    for (let i = 0; i < 6000; i += 1) {
      const v = drawCredits(seedA, `cs_${i}`, 1n, 6n);
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    // 1000 expected each; a fair die stays well within ±20% over 6000 throws.
    for (const c of counts.values()) expect(Math.abs(c - 1000)).toBeLessThan(200);
    expect(drawCredits(seedA, 'cs_x', 7n, 7n)).toBe(7n);
  });

  it('a catalog with a drawing lootbox needs the seed secret', () => {
    expect(() => parseCatalog(file, 'UTC', undefined)).toThrow(/LOOTBOX_SEED_SECRET/);
  });
});
