import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type pg from 'pg';
import type Stripe from 'stripe';
import type { LedgerApi } from '../../ledger/client/index.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import type { Catalog } from '../catalog/catalog.js';
import { catalogView } from '../catalog/catalog-view.js';
import type { CheckoutSessions } from '../checkout.js';
import type { InboxWriter } from '../inbox/inbox-writer.js';
import type { PaymentsMetrics } from '../metrics.js';
import { readBalance, registerApiRoutes, type BalanceView } from './api-routes.js';
import { HttpError } from './http-error.js';
import { registerDevSignIn } from './dev-sign-in.js';
import { registerOpsRoutes } from './ops-routes.js';
import { renderPurchasePage } from './purchase-page.js';
import type { UserAuth } from './user-auth.js';
import { registerWebhookRoute } from './webhook-route.js';

export interface AppDeps {
  log: Logger;
  clock: Clock;
  pool: pg.Pool;
  ledger: Pick<LedgerApi, 'getBalance' | 'listEntries'>;
  ledgerTimeoutMs: number;
  stripe: Stripe;
  webhookSecret: string;
  catalog: Catalog;
  checkout: CheckoutSessions;
  auth: UserAuth;
  writer: InboxWriter;
  metrics: PaymentsMetrics;
  onStored: () => void;
  /** The local system's sign-in page, with the HS256 secret it signs with. */
  devSignIn?: { secret: string };
}

/** JSON request bodies of the API are small; webhooks have their own 1 MiB limit. */
const apiBodyMaxBytes = 16 * 1024;

/**
 * The HTTP service: Stripe webhooks, the credits API, the purchase page, operations routes.
 * One error handler maps every failure to a status and a message naming the field.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // Webhooks log their own lines (with the Stripe event id); no per-request noise.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: apiBodyMaxBytes,
    // Strings with NUL bytes or other control characters are refused by the routes' patterns;
    // ajv must not coerce types (a number is not a package id).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  app.setErrorHandler((error: FastifyError | HttpError, request, reply) => {
    if (error instanceof HttpError) {
      return reply.code(error.statusCode).send({ statusCode: error.statusCode, error: reasonPhrase(error.statusCode), message: error.message });
    }
    if (error.validation) {
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: error.message });
    }
    const code = error.statusCode ?? 500;
    if (code >= 400 && code < 500) {
      return reply.code(code).send({ statusCode: code, error: reasonPhrase(code), message: error.message });
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', message: 'internal error' });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );

  await registerWebhookRoute(app, deps);
  registerApiRoutes(app, deps);
  registerOpsRoutes(app, deps);
  if (deps.devSignIn) registerDevSignIn(app, { secret: deps.devSignIn.secret, clock: deps.clock });

  app.get<{ Querystring: { checkout?: string } }>('/credits/purchase', async (request, reply) => {
    const token = /(?:^|;\s*)access_token=([^;]*)/.exec(request.headers.cookie ?? '')?.[1];
    let balance: BalanceView | null = null;
    if (token) {
      try {
        const userId = await deps.auth.userIdOfToken(decodeURIComponent(token));
        balance = await readBalance(deps, userId);
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        request.log.info({ reason: error.message }, 'purchase page without a usable session');
      }
    }
    const notice =
      request.query.checkout === 'success'
        ? 'Thank you! Your credits are added as soon as Stripe confirms the payment.'
        : request.query.checkout === 'cancelled'
          ? 'Checkout was cancelled; nothing was charged.'
          : null;
    reply.header('content-type', 'text/html; charset=utf-8');
    reply.header('cache-control', 'no-store');
    return renderPurchasePage(catalogView(deps.catalog, deps.clock.now()), balance, notice);
  });

  return app;
}

function reasonPhrase(code: number): string {
  return (
    { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 502: 'Bad Gateway', 503: 'Service Unavailable' }[code] ??
    'Error'
  );
}
