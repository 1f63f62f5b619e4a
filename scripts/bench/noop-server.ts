// The transport ceiling's server: a bare grpc-js server in its own process that answers the
// ledger's Consume method without doing anything. It is registered under the ledger's own
// method path, so the bench's clients call it with the very same client code and request
// bytes as the real Consume; it neither decodes the request nor encodes the answer (both are
// identity Buffer functions), so what it costs per call is the transport alone. The gap
// between this and the ledger is what the ledger's own work costs.
//
// Usage: node --import tsx scripts/bench/noop-server.ts 127.0.0.1:<port>
// Prints one JSON line {"msg":"ready","port":…} on stdout once it serves.
import * as grpc from '@grpc/grpc-js';
import { representativeConsumeResponse } from './messages.js';
import { exitWhenParentGoes } from './parent-watch.js';

exitWhenParentGoes();

const address = process.argv[2] ?? '127.0.0.1:0';

// Encoded once, sent every time.
const response = representativeConsumeResponse();

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
