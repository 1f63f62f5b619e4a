import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

/**
 * Serves one prom-client registry at GET /metrics on its own port, for services whose main
 * transport is not HTTP (the ledger's gRPC, the worker's queue). With `ready`, GET /readyz
 * answers 200 while it returns true and 503 otherwise: a plain HTTP readiness probe for a
 * process whose gRPC port serves TLS only, which the kubelet's gRPC probe cannot speak. Two
 * routes with no body, no auth and no parsing: node:http is enough, and keeps a web framework
 * out of those processes.
 */
export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(
  address: string,
  registry: Registry,
  log: Logger,
  ready?: () => boolean,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const route = req.method === 'GET' ? (req.url ?? '').split('?')[0] : null;
    if (route === '/readyz' && ready) {
      const serving = ready();
      res.writeHead(serving ? 200 : 503, { 'content-type': 'text/plain' }).end(serving ? 'SERVING\n' : 'NOT_SERVING\n');
      return;
    }
    if (route !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: GET /metrics${ready ? ' or /readyz' : ''}\n`);
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => {
        log.warn({ err: error }, 'metrics collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(address.slice(at + 1)), host, () => resolve());
  });
  server.keepAliveTimeout = 5_000;
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
