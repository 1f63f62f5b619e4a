// The no-op servers, each in its own process, answering the ledger's Consume method without
// doing anything. They are registered under the ledger's own method path, so the bench's
// clients call them with the very same client code and request bytes as the real Consume.
//
// - `bare` (the transport ceiling the targets use): a bare grpc-js server that neither decodes
//   the request nor encodes the answer (identity Buffer functions), so what it costs per call
//   is the transport alone.
// - `stack`: the ledger's own GrpcServer (services/ledger/grpc/server.ts) with a Consume
//   handler that answers a constant: ts-proto decoding and encoding, bearer-token auth and
//   role check, deadline, the promise-based handler. What it costs over `bare` is our server
//   stack; what the ledger costs over it is the ledger's own work.
//
// Usage: node --import tsx scripts/bench/noop-server.ts bare|stack 127.0.0.1:<port>
// (stack reads the bearer token from BENCH_TOKEN). Prints one JSON line
// {"msg":"ready","port":…} on stdout once it serves.
import * as grpc from '@grpc/grpc-js';
import { ConsumeResponse, LedgerServiceService } from '../../services/ledger/client/index.js';
import { Authenticator } from '../../services/ledger/grpc/auth.js';
import { GrpcServer } from '../../services/ledger/grpc/server.js';
import { createLogger } from '../../services/lib/logger.js';
import { representativeConsumeResponse } from './messages.js';
import { exitWhenParentGoes } from './parent-watch.js';

exitWhenParentGoes();

const mode = process.argv[2];
const address = process.argv[3] ?? '127.0.0.1:0';
if (mode !== 'bare' && mode !== 'stack') {
  console.error('usage: noop-server.ts bare|stack <host:port>');
  process.exit(2);
}

// Encoded once, sent every time.
const response = representativeConsumeResponse();

if (mode === 'stack') serveStack();
else serveBare();

function serveStack(): void {
  const token = process.env.BENCH_TOKEN;
  if (!token) {
    console.error('noop-server.ts stack: BENCH_TOKEN is not set');
    process.exit(2);
  }
  // Decoded once: the server stack encodes it again on every call, as it would a real answer.
  const answer = ConsumeResponse.decode(response);
  const server = new GrpcServer(
    { auth: new Authenticator([{ name: 'bench', token, role: 'admin' }]), log: createLogger('noop-stack', 'warn') },
    [{ name: 'credits.ledger.v1.LedgerService', definition: { consume: LedgerServiceService.consume }, handlers: { consume: async () => answer } }],
  );
  server.listen(address).then(
    (port) => console.log(JSON.stringify({ msg: 'ready', port, response_bytes: response.length })),
    (error: unknown) => {
      console.error(JSON.stringify({ msg: 'bind failed', error: (error as Error).message }));
      process.exit(1);
    },
  );
  const stop = () => {
    void server.drain(1_000).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function serveBare(): void {
  const identity = (value: Buffer): Buffer => value;

  const definition: grpc.ServiceDefinition = {
    Consume: {
      path: '/credits.ledger.v1.LedgerService/Consume',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  };

  // The same server options as the ledger's GrpcServer (services/ledger/grpc/server.ts), so that
  // both servers run the same grpc-js code paths.
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 256 * 1024,
    'grpc.keepalive_permit_without_calls': 1,
  });
  server.addService(definition, {
    Consume: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, response),
  });

  server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error) {
      console.error(JSON.stringify({ msg: 'bind failed', error: error.message }));
      process.exit(1);
    }
    console.log(JSON.stringify({ msg: 'ready', port, response_bytes: response.length }));
  });

  const stop = () => {
    server.tryShutdown(() => process.exit(0));
    // Calls still open after a second are the bench's own and no longer matter.
    setTimeout(() => process.exit(0), 1_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
