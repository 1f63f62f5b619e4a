import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../../lib/clock.js';
import { unauthorized } from './http-error.js';

/**
 * User access tokens, as Supabase issues them: JWTs signed HS256 with the project's secret
 * (or, with AUTH_JWKS_URL, RS256/ES256 keys from a JWKS), `sub` = the user id. Expiry and
 * not-before are checked against the service clock.
 */
export class UserAuth {
  readonly #secret: Uint8Array;
  readonly #jwks: JWTVerifyGetKey | null;

  constructor(
    secret: string,
    jwksUrl: string | undefined,
    private readonly clock: Clock,
  ) {
    this.#secret = new TextEncoder().encode(secret);
    this.#jwks = jwksUrl ? createRemoteJWKSet(new URL(jwksUrl)) : null;
  }

  /** The user id of a `Bearer <jwt>` header (or a bare token), or 401 saying what is wrong. */
  async userId(authorization: string | undefined): Promise<string> {
    if (!authorization) throw unauthorized('authorization: a Bearer access token is required');
    const m = /^Bearer ([A-Za-z0-9_.-]{1,8192})$/.exec(authorization);
    if (!m) throw unauthorized('authorization: expected "Bearer <access token>"');
    return this.userIdOfToken(m[1]!);
  }

  async userIdOfToken(token: string): Promise<string> {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw unauthorized('access token: not a JWT');
    }
    const options = { currentDate: this.clock.now(), clockTolerance: 5 };
    let payload;
    try {
      if (alg === 'HS256') {
        ({ payload } = await jwtVerify(token, this.#secret, { ...options, algorithms: ['HS256'] }));
      } else if ((alg === 'RS256' || alg === 'ES256') && this.#jwks) {
        ({ payload } = await jwtVerify(token, this.#jwks, { ...options, algorithms: ['RS256', 'ES256'] }));
      } else {
        throw unauthorized(`access token: algorithm ${alg ?? '(none)'} is not accepted`);
      }
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw unauthorized('access token: expired');
      if (error instanceof errors.JOSEError) throw unauthorized(`access token: ${error.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' ? 'bad signature' : error.message}`);
      throw error;
    }
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub === '' || sub.length > 128 || /\p{Cc}/u.test(sub)) {
      throw unauthorized('access token: sub (the user id) is missing or not a valid id');
    }
    return sub;
  }
}
