import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.js';
import { HttpError } from './http-error.js';
import { UserAuth } from './user-auth.js';

// User tokens: HS256 with the shared secret (Supabase's default) and RS256/ES256 from a JWKS
// served over real HTTP; expiry against the injected clock.

const secret = 'hs256-secret-for-user-auth-tests-0123456789';
const clock = new ManualClock('2026-11-24T12:00:00.000Z');
const now = () => Math.floor(clock.now().getTime() / 1000);
let jwksUrl: string;
let close: () => Promise<void>;
let rsa: Awaited<ReturnType<typeof generateKeyPair>>;
let ec: Awaited<ReturnType<typeof generateKeyPair>>;

beforeAll(async () => {
  rsa = await generateKeyPair('RS256');
  ec = await generateKeyPair('ES256');
  const keys = [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }, { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' }];
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  close = () => new Promise((r) => server.close(() => r()));
});
afterAll(async () => close?.());

const refusal = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (error) {
    expect(error).toBeInstanceOf(HttpError);
    return { status: (error as HttpError).statusCode, message: (error as HttpError).message };
  }
  throw new Error('expected a refusal');
};

describe('user tokens', () => {
  it('HS256 with the secret: sub is the user; expiry follows the clock', async () => {
    const auth = new UserAuth(secret, undefined, clock);
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('user-a').setExpirationTime(now() + 60).sign(new TextEncoder().encode(secret));
    expect(await auth.userId(`Bearer ${token}`)).toBe('user-a');
    clock.advance(66_000);
    expect(await refusal(auth.userId(`Bearer ${token}`))).toEqual({ status: 401, message: 'access token: expired' });
    clock.set('2026-11-24T12:00:00.000Z');
  });

  it('RS256 and ES256 from the JWKS when configured, refused without it', async () => {
    const withJwks = new UserAuth(secret, jwksUrl, clock);
    const without = new UserAuth(secret, undefined, clock);
    const rs = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).setSubject('user-rs').setExpirationTime(now() + 60).sign(rsa.privateKey);
    const es = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'ec-1' }).setSubject('user-es').setExpirationTime(now() + 60).sign(ec.privateKey);
    expect(await withJwks.userId(`Bearer ${rs}`)).toBe('user-rs');
    expect(await withJwks.userId(`Bearer ${es}`)).toBe('user-es');
    expect(await refusal(without.userId(`Bearer ${rs}`))).toMatchObject({ status: 401, message: expect.stringMatching(/algorithm RS256/) });
    // A key the JWKS does not have.
    const other = await generateKeyPair('RS256');
    const stranger = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).setSubject('x').setExpirationTime(now() + 60).sign(other.privateKey);
    expect((await refusal(withJwks.userId(`Bearer ${stranger}`))).status).toBe(401);
  });
});
