import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { CheckpointAnchor } from './replay.js';

/**
 * Signed checkpoints of the journal head (ledger README, audit). Whoever owns the tables can
 * rewrite an entry and recompute every hash after it: the chain alone still "verifies". A
 * checkpoint published outside the database (a file, a ticket, an e-mail) fixes the hash at a
 * sequence number with an ed25519 signature, so a later rewrite of anything at or before it no
 * longer reaches the same hash there, and `verify --checkpoints FILE --public-key KEY` says so.
 */
export interface Checkpoint {
  format: 'credit-ledger-checkpoint-v1';
  seq: string;
  hash: string;
  /** recorded_at of the head entry. */
  head_recorded_at: string;
  signed_at: string;
  /** The raw 32-byte ed25519 public key, base64. */
  public_key: string;
  /** ed25519 signature of `checkpointMessage`, base64. */
  signature: string;
}

export type CheckpointBody = Pick<Checkpoint, 'seq' | 'hash' | 'head_recorded_at' | 'signed_at'>;

/** The exact bytes signed: one field per line, in a fixed order. */
export function checkpointMessage(c: CheckpointBody): Buffer {
  return Buffer.from(`credit-ledger-checkpoint-v1\nseq=${c.seq}\nhash=${c.hash}\nhead_recorded_at=${c.head_recorded_at}\nsigned_at=${c.signed_at}\n`);
}

const pkcs8Ed25519Prefix = Buffer.from('302e020100300506032b657004220420', 'hex');
const spkiEd25519Prefix = Buffer.from('302a300506032b6570032100', 'hex');

/** A 32-byte value written as hex (64 digits) or base64/base64url, or null if it is neither. */
function raw32(text: string): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === 32) return b;
  }
  return null;
}

/** AUDIT_SIGNING_KEY: a PKCS#8 PEM ed25519 private key, or its 32-byte seed in hex or base64. */
export function parseSigningKey(text: string): KeyObject {
  const seed = raw32(text);
  const key = seed
    ? createPrivateKey({ key: Buffer.concat([pkcs8Ed25519Prefix, seed]), format: 'der', type: 'pkcs8' })
    : createPrivateKey(text.includes('-----BEGIN') ? text : (() => { throw new Error('not a PEM key, hex or base64 seed'); })());
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an ed25519 key is required, got ${key.asymmetricKeyType}`);
  return key;
}

/** `--public-key`: a SPKI PEM, a file holding one, or the raw 32-byte key in hex or base64. */
export function parsePublicKey(text: string): KeyObject {
  const raw = raw32(text);
  if (raw) return createPublicKey({ key: Buffer.concat([spkiEd25519Prefix, raw]), format: 'der', type: 'spki' });
  const pem = text.includes('-----BEGIN') ? text : readFileSync(text, 'utf8');
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an ed25519 key is required, got ${key.asymmetricKeyType}`);
  return key;
}

export function rawPublicKey(key: KeyObject): string {
  const der = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return der.subarray(spkiEd25519Prefix.length).toString('base64');
}

export function signCheckpoint(body: CheckpointBody, privateKey: KeyObject): Checkpoint {
  return {
    format: 'credit-ledger-checkpoint-v1',
    ...body,
    public_key: rawPublicKey(privateKey),
    signature: sign(null, checkpointMessage(body), privateKey).toString('base64'),
  };
}

export function checkpointValid(c: Checkpoint, publicKey: KeyObject): boolean {
  try {
    return verify(null, checkpointMessage(c), publicKey, Buffer.from(c.signature, 'base64'));
  } catch {
    return false;
  }
}

/**
 * Reads a checkpoints file (JSON lines, as `checkpoint` appends them) and checks every
 * signature with the auditor's public key. A line that does not parse or verify is an error:
 * an auditor must not silently lose a checkpoint.
 */
export function loadCheckpoints(path: string, publicKey: KeyObject): CheckpointAnchor[] {
  const anchors: CheckpointAnchor[] = [];
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let c: Checkpoint;
    try {
      c = JSON.parse(line) as Checkpoint;
    } catch {
      throw new Error(`${path}:${i + 1}: not a JSON checkpoint`);
    }
    if (c.format !== 'credit-ledger-checkpoint-v1' || !/^[0-9]+$/.test(String(c.seq)) || !/^[0-9a-f]{64}$/.test(String(c.hash))) {
      throw new Error(`${path}:${i + 1}: not a credit-ledger-checkpoint-v1 record`);
    }
    if (!checkpointValid(c, publicKey)) {
      throw new Error(`${path}:${i + 1}: the signature of checkpoint ${c.seq} does not verify with the given public key`);
    }
    anchors.push({ seq: c.seq, hash: c.hash, label: `#${c.seq} signed ${c.signed_at}` });
  });
  return anchors;
}
