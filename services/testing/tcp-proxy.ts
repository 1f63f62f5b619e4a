import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1:0 in front of a real server (PostgreSQL here), for tests of what a
 * service does when its database connection breaks or stalls: `cut()` resets every connection
 * (ECONNRESET, as after a failover), `freeze()` keeps the sockets open but stops forwarding
 * (a paused VM or a half-open connection: nothing arrives, nothing errors), `refuse()` stops
 * accepting (ECONNREFUSED), `restore()` undoes freeze and refuse.
 */
export interface TcpProxy {
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  urlFor(url: string): string;
  cut(): void;
  freeze(): void;
  refuse(): void;
  restore(): void;
  readonly connectionCount: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  /** Bytes held back while frozen, per direction, delivered in order by restore(). */
  interface Pair {
    client: net.Socket;
    upstream: net.Socket;
    held: { to: net.Socket; chunk: Buffer }[];
  }
  const pairs = new Set<Pair>();
  let frozen = false;
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    const pair: Pair = { client, upstream, held: [] };
    pairs.add(pair);
    // Frozen: bytes are held back, so nothing arrives and nothing errors, as on a link that
    // stopped delivering; restore() delivers them in order, with no byte lost.
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (frozen) pair.held.push({ to, chunk });
        else to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const cut = () => {
    for (const { client, upstream } of pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  return {
    port,
    urlFor(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut,
    freeze() {
      frozen = true;
    },
    refuse() {
      refusing = true;
    },
    restore() {
      frozen = false;
      refusing = false;
      for (const pair of pairs) {
        for (const { to, chunk } of pair.held.splice(0)) to.write(chunk);
      }
    },
    get connectionCount() {
      return pairs.size;
    },
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
