import { status, type ServiceError } from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { LedgerApi } from '../../ledger/client/index.js';
import type { PaymentsMetrics } from '../metrics.js';

export interface OpsDeps {
  pool: pg.Pool;
  ledger: Pick<LedgerApi, 'getBalance'>;
  metrics: PaymentsMetrics;
}

/** /healthz (the process answers), /readyz (database and ledger reachable), /metrics. */
export function registerOpsRoutes(app: FastifyInstance, deps: OpsDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const [database, ledger] = await Promise.all([
      deps.pool.query('SELECT 1').then(
        () => 'ok',
        (error: Error) => `unreachable: ${error.message}`,
      ),
      // Any answer from the ledger's read path other than a transport failure means it is up
      // and accepts our credential; a user it never saw answers NOT_FOUND.
      deps.ledger.getBalance({ userId: 'payments-readiness-probe' }, { timeoutMs: 2_000 }).then(
        () => 'ok',
        (error: ServiceError) => (error.code === status.NOT_FOUND ? 'ok' : `unreachable: ${status[error.code] ?? error.code}`),
      ),
    ]);
    const ready = database === 'ok' && ledger === 'ok';
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', database, ledger });
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });
}
