import type { FastifyInstance } from 'fastify';
import { SignJWT } from 'jose';
import type { Clock } from '../../lib/clock.js';
import { HttpError } from './http-error.js';

/**
 * `GET /dev/sign-in?user_id=U`: for a local system only (`npm start` turns it on with
 * PAYMENTS_DEV_SIGN_IN=1, and configuration refuses it next to a live Stripe key). It plays the
 * identity provider: signs an HS256 access token for U with AUTH_JWT_SECRET, sets it as the
 * `access_token` cookie the purchase page reads (as a Supabase client would), and sends the
 * browser to /credits/purchase.
 */
export function registerDevSignIn(app: FastifyInstance, deps: { secret: string; clock: Clock }): void {
  const key = new TextEncoder().encode(deps.secret);
  app.get<{ Querystring: { user_id?: string } }>('/dev/sign-in', async (request, reply) => {
    const userId = request.query.user_id ?? '';
    if (!/^[\w.:@-]{1,128}$/.test(userId)) throw new HttpError(400, 'user_id: 1–128 letters, digits or _ . : @ -');
    const nowS = Math.floor(deps.clock.now().getTime() / 1000);
    const token = await new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userId)
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + 3_600)
      .sign(key);
    return reply
      .header('set-cookie', `access_token=${token}; Path=/; Max-Age=3600; SameSite=Lax`)
      .redirect('/credits/purchase', 303);
  });
}
