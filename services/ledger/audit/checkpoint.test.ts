import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointValid, loadCheckpoints, parsePublicKey, parseSigningKey, rawPublicKey, signCheckpoint } from './checkpoint.js';

// Signed checkpoints (audit README, "checkpoint"): ed25519 over a fixed text; every key form the
// CLI accepts; any changed field breaks the signature.

const body = { seq: '42', hash: 'ab'.repeat(32), head_recorded_at: '2026-11-01T00:00:00.000Z', signed_at: '2026-11-02T00:00:00.000Z' };

describe('checkpoints', () => {
  it('accept keys as a PEM, a hex seed or a base64 seed, and verify with the public key in PEM, raw base64 or a file', () => {
    const seed = randomBytes(32);
    const fromHex = parseSigningKey(seed.toString('hex'));
    const fromB64 = parseSigningKey(seed.toString('base64'));
    expect(rawPublicKey(fromHex)).toBe(rawPublicKey(fromB64));
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const fromPem = parseSigningKey(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const c = signCheckpoint(body, fromPem);
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'ckpt-')), 'key.pem');
    writeFileSync(file, pem);
    for (const k of [pem, c.public_key, file]) expect(checkpointValid(c, parsePublicKey(k))).toBe(true);
    expect(() => parseSigningKey('not a key')).toThrow(/PEM key, hex or base64 seed/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    expect(() => parseSigningKey(rsa)).toThrow(/ed25519/);
  });

  it('a change to any field, or another key, fails verification', () => {
    const key = parseSigningKey(randomBytes(32).toString('hex'));
    const c = signCheckpoint(body, key);
    const pub = parsePublicKey(c.public_key);
    expect(checkpointValid(c, pub)).toBe(true);
    for (const change of [{ seq: '43' }, { hash: 'cd'.repeat(32) }, { head_recorded_at: '2026-11-01T00:00:00.001Z' }, { signed_at: '2030-01-01T00:00:00.000Z' }]) {
      expect(checkpointValid({ ...c, ...change }, pub)).toBe(false);
    }
    expect(checkpointValid(c, parsePublicKey(randomBytes(32).toString('hex')))).toBe(false);
  });

  it('loadCheckpoints refuses a line that does not parse or verify, naming it', () => {
    const key = parseSigningKey(randomBytes(32).toString('hex'));
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));
    const good = signCheckpoint(body, key);
    const file = path.join(dir, 'c.jsonl');
    writeFileSync(file, `${JSON.stringify(good)}\n\n${JSON.stringify({ ...good, seq: '41' })}\n`);
    expect(() => loadCheckpoints(file, parsePublicKey(good.public_key))).toThrow(/c\.jsonl:3: the signature of checkpoint 41 does not verify/);
    writeFileSync(file, `${JSON.stringify(good)}\n`);
    expect(loadCheckpoints(file, parsePublicKey(good.public_key))).toEqual([{ seq: '42', hash: body.hash, label: `#42 signed ${body.signed_at}` }]);
    writeFileSync(file, 'garbage\n');
    expect(() => loadCheckpoints(file, parsePublicKey(good.public_key))).toThrow(/c\.jsonl:1: not a JSON checkpoint/);
  });
});
