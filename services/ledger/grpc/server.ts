import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { context as otelContext, trace, type Span } from '@opentelemetry/api';
import { contextFrom, SpanKind, SpanStatusCode, tracer, tracingEnabled } from '../../lib/tracing.js';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from '../../lib/logger.js';
import { LedgerError } from '../domain/errors.js';
import type { Authenticator, Principal } from './auth.js';
import { toServiceError } from './errors.js';

export interface CallContext {
  principal: Principal;
  /** Epoch ms of the caller's deadline; Infinity when it set none. */
  deadlineMs: number;
}

/** Where a server-streaming handler writes; `write` waits while the client is slow. */
export interface StreamSink<Res> {
  write(message: Res): Promise<void>;
  /** Aborted when the client cancels or the server drains. */
  readonly signal: AbortSignal;
}

/**
 * A service's handlers as plain async functions (nice-grpc style). The key remapping drops the
 * index signature that ts-proto's server interfaces inherit from grpc-js.
 */
export type Handlers<S> = {
  [K in keyof S as string extends K ? never : K]: S[K] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (request: Req, call: CallContext) => Promise<Res>
    : S[K] extends grpc.handleServerStreamingCall<infer Req, infer Res>
      ? (request: Req, call: CallContext, sink: StreamSink<Res>) => Promise<void>
      : never;
};

/** The largest request the server reads; anything larger is refused by grpc-js before parsing. */
export const requestBytesMax = 256 * 1024;

/**
 * The descriptors `buf build` wrote at code generation (`npm run gen`): every file of proto/
 * with its real name, its dependencies (google/protobuf/timestamp.proto, …) and snake_case field
 * names, so that reflection clients (grpcurl, buf curl, Python's grpc reflection) can resolve
 * and call every method. ReflectionService reads only the `fileDescriptorProtos` of each entry
 * of the package definition it is given, so the real files are handed to it in that shape.
 */
const descriptorsPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../generated/descriptors.binpb');

function reflectedFiles(): ConstructorParameters<typeof ReflectionService>[0] {
  const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorsPath));
  const fileDescriptorProtos = set.file.map((file) => toBinary(FileDescriptorProtoSchema, file));
  return { 'proto/': { fileDescriptorProtos } } as unknown as ConstructorParameters<typeof ReflectionService>[0];
}

export interface GrpcServerOptions {
  auth: Authenticator;
  log: Logger;
  /** Called when a call ends, with its method, gRPC status code and duration (metrics). */
  onCallEnd?: (method: string, code: grpc.status, seconds: number) => void;
}

type AnyHandler = (request: never, call: CallContext, sink: StreamSink<unknown>) => Promise<unknown>;

export interface ServiceBinding {
  name: string;
  definition: grpc.ServiceDefinition;
  handlers: Record<string, AnyHandler>;
}

/**
 * A grpc-js server with bearer-token auth and role checks on every call, deadlines passed to
 * handlers, one error mapping, grpc.health.v1 and server reflection.
 */
export class GrpcServer {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  readonly #log: Logger;
  readonly #onCallEnd: NonNullable<GrpcServerOptions['onCallEnd']>;
  readonly #serviceNames: string[] = [];
  /** Aborted by drain(), so that endless streams end instead of holding the drain up. */
  readonly #draining = new AbortController();

  constructor(
    options: GrpcServerOptions,
    services: ServiceBinding[],
  ) {
    this.#log = options.log;
    this.#onCallEnd = options.onCallEnd ?? (() => {});
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': requestBytesMax,
      'grpc.keepalive_permit_without_calls': 1,
    });
    for (const service of services) {
      const implementation: grpc.UntypedServiceImplementation = {};
      for (const [method, definition] of Object.entries(service.definition)) {
        const handler = service.handlers[method];
        if (!handler) throw new Error(`${service.name}.${method} has no handler`);
        const methodName = definition.path.slice(definition.path.lastIndexOf('/') + 1);
        implementation[method] = definition.responseStream
          ? this.#serverStream(methodName, handler, options.auth)
          : this.#unary(methodName, handler, options.auth);
      }
      this.server.addService(service.definition, implementation);
      this.#serviceNames.push(service.name);
    }
    this.health = new HealthImplementation({
      '': 'NOT_SERVING',
      ...Object.fromEntries(this.#serviceNames.map((n) => [n, 'NOT_SERVING' as const])),
    });
    this.health.addToServer(this.server);
    new ReflectionService(reflectedFiles()).addToServer(this.server);
  }

  /**
   * Binds `host:port` (port 0 picks a free one) and reports SERVING. Returns the bound port.
   * With `tls`, only TLS (and with a client CA, only clients presenting a certificate it signed);
   * without, plaintext, which is meant for loopback addresses: anywhere else it logs a warning.
   */
  async listen(address: string, tls: ServerTls | null = null): Promise<number> {
    const credentials = tls
      ? grpc.ServerCredentials.createSsl(tls.clientCaPem, [{ private_key: tls.keyPem, cert_chain: tls.certPem }], tls.clientCaPem !== null)
      : grpc.ServerCredentials.createInsecure();
    if (!tls && !isLoopback(address)) {
      this.#log.warn({ address }, 'serving plaintext gRPC on a non-loopback address: set LEDGER_TLS_CERT and LEDGER_TLS_KEY');
    }
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address, credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    this.setServing(true);
    return port;
  }

  setServing(serving: boolean): void {
    const s = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', s);
    for (const name of this.#serviceNames) this.health.setStatus(name, s);
  }

  /**
   * Graceful drain: report NOT_SERVING, refuse new calls, let calls in flight finish; after
   * `graceMs` cut whatever is left.
   */
  async drain(graceMs: number): Promise<void> {
    this.setServing(false);
    this.#draining.abort();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#log.warn({ graceMs }, 'drain grace period over; cancelling remaining calls');
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Authenticates and authorises a call; throws LedgerError when it may not proceed. */
  #admit(
    method: string,
    auth: Authenticator,
    call: { metadata: grpc.Metadata; getDeadline(): grpc.Deadline },
  ): CallContext {
    const principal = auth.authenticate(call.metadata);
    auth.authorize(principal, method);
    const context = { principal, deadlineMs: deadlineMs(call.getDeadline()) };
    if (context.deadlineMs <= Date.now()) throw new LedgerError('DEADLINE_EXCEEDED', 'deadline already passed');
    return context;
  }

  #serverStream(method: string, handler: AnyHandler, auth: Authenticator): grpc.handleServerStreamingCall<unknown, unknown> {
    const log = this.#log;
    const onEnd = this.#onCallEnd;
    return (call) => {
      const startedMs = performance.now();
      const fail = (error: unknown) => {
        const serviceError = toServiceError(error, log, method);
        onEnd(method, serviceError.code ?? grpc.status.UNKNOWN, (performance.now() - startedMs) / 1000);
        call.emit('error', serviceError);
      };
      let context: CallContext;
      try {
        context = this.#admit(method, auth, call);
      } catch (error) {
        fail(error);
        return;
      }
      const cancelled = new AbortController();
      call.on('cancelled', () => cancelled.abort());
      const signal = AbortSignal.any([cancelled.signal, this.#draining.signal]);
      const sink: StreamSink<unknown> = {
        signal,
        write: (message) =>
          new Promise<void>((resolve) => {
            if (signal.aborted) return resolve();
            // write() returns false when the transport buffer is full: wait for the client.
            if (call.write(message)) return resolve();
            const done = () => {
              call.off('drain', done);
              signal.removeEventListener('abort', done);
              resolve();
            };
            call.on('drain', done);
            signal.addEventListener('abort', done);
          }),
      };
      const end = () => {
        onEnd(method, grpc.status.OK, (performance.now() - startedMs) / 1000);
        call.end();
      };
      handler(call.request as never, context, sink).then(end, (error: unknown) => (cancelled.signal.aborted ? end() : fail(error)));
    };
  }

  #unary(method: string, handler: AnyHandler, auth: Authenticator): grpc.handleUnaryCall<unknown, unknown> {
    const log = this.#log;
    const noSink: StreamSink<unknown> = { write: async () => {}, signal: new AbortController().signal };
    const onEnd = this.#onCallEnd;
    return (call, callback) => {
      const startedMs = performance.now();
      const span = startServerSpan(method, call.metadata);
      const fail = (error: unknown) => {
        const serviceError = toServiceError(error, log, method);
        onEnd(method, serviceError.code ?? grpc.status.UNKNOWN, (performance.now() - startedMs) / 1000);
        endServerSpan(span, serviceError.code ?? grpc.status.UNKNOWN, serviceError.details);
        callback(serviceError as grpc.ServiceError);
      };
      let context: CallContext;
      try {
        context = this.#admit(method, auth, call);
      } catch (error) {
        fail(error);
        return;
      }
      const run = () => handler(call.request as never, context, noSink);
      (span ? otelContext.with(trace.setSpan(otelContext.active(), span), run) : run()).then((response) => {
        onEnd(method, grpc.status.OK, (performance.now() - startedMs) / 1000);
        endServerSpan(span, grpc.status.OK);
        callback(null, response);
      }, fail);
    };
  }
}

/**
 * A SERVER span for a call when tracing is on, continuing the caller's trace from the
 * `traceparent` metadata (the ledger client sends it).
 */
function startServerSpan(method: string, metadata: grpc.Metadata): Span | null {
  if (!tracingEnabled()) return null;
  const traceparent = metadata.get('traceparent')[0];
  const parent = contextFrom(typeof traceparent === 'string' ? traceparent : null);
  return tracer('credits-ledger').startSpan(
    `credits.ledger.v1.LedgerService/${method}`,
    { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': 'credits.ledger.v1.LedgerService', 'rpc.method': method } },
    parent,
  );
}

function endServerSpan(span: Span | null, code: grpc.status, message?: string): void {
  if (!span) return;
  span.setAttribute('rpc.grpc.status_code', code);
  if (code !== grpc.status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: message ?? grpc.status[code] });
  span.end();
}

/** PEM material for the server's TLS; `clientCaPem` makes client certificates required (mTLS). */
export interface ServerTls {
  certPem: Buffer;
  keyPem: Buffer;
  clientCaPem: Buffer | null;
}

function isLoopback(address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function deadlineMs(deadline: grpc.Deadline): number {
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? deadline : Number.POSITIVE_INFINITY;
}
