import { createHash, createHmac } from 'node:crypto';

/**
 * Provably fair lootbox draws (commit/reveal). Each window of a lootbox has a server seed,
 * derived from a secret only the server knows. Before the window opens, anyone can read the
 * seed's SHA-256 (the commitment) from the catalog API; after it closes, the seed itself. The
 * credits of a purchase are a deterministic function of that seed and the Checkout Session id,
 * so anyone can re-derive every draw of the window and check the seed against the commitment:
 *
 *   for i = 0, 1, …: h = HMAC-SHA256(key = seed bytes, message = "<session id>:<i>")
 *                    v = first 8 bytes of h as an unsigned big-endian integer
 *                    if v < 2^64 − (2^64 mod n): credits = min + (v mod n); stop
 *   where n = max − min + 1 (rejection sampling: every amount in [min, max] is equally likely).
 *
 * The server cannot pick a session's outcome after the fact (the seed is fixed by the
 * commitment), and the buyer cannot know it beforehand (the seed is secret until the window
 * closes; the session id comes from Stripe).
 */

const seedVersion = 'lootbox-seed:v1';

/** The server seed of one window of one lootbox (32 bytes, hex). */
export function windowSeed(secret: string, lootboxId: string, opensAt: Date): string {
  return createHmac('sha256', secret).update(`${seedVersion}:${lootboxId}:${opensAt.toISOString()}`).digest('hex');
}

/** The published commitment to a seed: SHA-256 of its bytes, hex. */
export function seedCommitment(seedHex: string): string {
  return createHash('sha256').update(Buffer.from(seedHex, 'hex')).digest('hex');
}

const two64 = 1n << 64n;

/** The credits a session draws from a window's seed, uniformly in [min, max]. */
export function drawCredits(seedHex: string, sessionId: string, min: bigint, max: bigint): bigint {
  if (max < min) throw new Error('drawCredits: max < min');
  const n = max - min + 1n;
  const limit = two64 - (two64 % n);
  const key = Buffer.from(seedHex, 'hex');
  for (let i = 0; ; i += 1) {
    const h = createHmac('sha256', key).update(`${sessionId}:${i}`).digest();
    const v = h.readBigUInt64BE(0);
    if (v < limit) return min + (v % n);
  }
}
