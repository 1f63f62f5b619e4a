import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { currentTraceparent, inSpan, SpanKind, tracingEnabled } from '../../lib/tracing.js';
import * as pb from '../../generated/proto/credits/ledger/v1/ledger.js';

/**
 * The ledger's client for other services and tests: promise-returning methods named like the
 * RPCs, bearer token attached, partial requests filled with proto defaults. Other services
 * reach the ledger only through this.
 */
export const requestTypes = {
  grant: pb.GrantRequest,
  purchase: pb.PurchaseRequest,
  reserve: pb.ReserveRequest,
  extendHold: pb.ExtendHoldRequest,
  capture: pb.CaptureRequest,
  release: pb.ReleaseRequest,
  consume: pb.ConsumeRequest,
  renewSubscription: pb.RenewSubscriptionRequest,
  refund: pb.RefundRequest,
  reinstateDispute: pb.ReinstateDisputeRequest,
  reverse: pb.ReverseRequest,
  quote: pb.QuoteRequest,
  getBalance: pb.GetBalanceRequest,
  getEntry: pb.GetEntryRequest,
  listEntries: pb.ListEntriesRequest,
} as const;

export type MethodName = keyof typeof requestTypes;
type RequestOf<M extends MethodName> = ReturnType<(typeof requestTypes)[M]['fromPartial']>;
type ResponseOf<M extends MethodName> = ReturnType<(typeof pb.LedgerServiceService)[M]['responseDeserialize']>;

export interface CallOptions {
  /** Milliseconds from now; the server drops a command whose deadline passed before it ran. */
  timeoutMs?: number;
}

export type LedgerApi = {
  [M in MethodName]: (request: pb.DeepPartial<RequestOf<M>>, options?: CallOptions) => Promise<ResponseOf<M>>;
};

export interface LedgerClient extends LedgerApi {
  /**
   * The journal from `fromEntryId` on, then new entries as they come, until `signal` aborts
   * (or the server drains). Iterating slowly slows the server down: it never buffers ahead.
   */
  streamJournal(fromEntryId: bigint, signal?: AbortSignal): AsyncIterable<pb.Entry>;
  close(): void;
  readonly raw: pb.LedgerServiceClient;
}

/** TLS for the channel: the CA that signed the ledger's certificate, and a client certificate for mTLS. */
export interface ClientTls {
  caPem: Buffer;
  certPem?: Buffer;
  keyPem?: Buffer;
}

/** Client TLS from LEDGER_TLS_CA, LEDGER_TLS_CLIENT_CERT and LEDGER_TLS_CLIENT_KEY (PEM file paths), if set. */
export function ledgerClientTlsFromEnv(env: Record<string, string | undefined>): ClientTls | undefined {
  if (!env.LEDGER_TLS_CA) return undefined;
  if (Boolean(env.LEDGER_TLS_CLIENT_CERT) !== Boolean(env.LEDGER_TLS_CLIENT_KEY)) {
    throw new Error('LEDGER_TLS_CLIENT_CERT and LEDGER_TLS_CLIENT_KEY go together');
  }
  return {
    caPem: readFileSync(env.LEDGER_TLS_CA),
    ...(env.LEDGER_TLS_CLIENT_CERT ? { certPem: readFileSync(env.LEDGER_TLS_CLIENT_CERT), keyPem: readFileSync(env.LEDGER_TLS_CLIENT_KEY!) } : {}),
  };
}

export function createLedgerClient(
  address: string,
  token: string,
  channelOptions: grpc.ClientOptions = {},
  tls?: ClientTls,
): LedgerClient {
  const credentials = tls
    ? grpc.credentials.createSsl(tls.caPem, tls.keyPem ?? null, tls.certPem ?? null)
    : grpc.credentials.createInsecure();
  const raw = new pb.LedgerServiceClient(address, credentials, channelOptions);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  const api = {} as Record<MethodName, unknown>;
  for (const name of Object.keys(requestTypes) as MethodName[]) {
    const type = requestTypes[name] as { fromPartial(p: unknown): unknown };
    const rpc = `${name[0]!.toUpperCase()}${name.slice(1)}`;
    const call = (request: unknown, options: CallOptions) =>
      new Promise((resolve, reject) => {
        const callOptions: grpc.CallOptions = {};
        if (options.timeoutMs !== undefined) callOptions.deadline = Date.now() + options.timeoutMs;
        const method = raw[name] as unknown as (
          req: unknown,
          md: grpc.Metadata,
          opts: grpc.CallOptions,
          cb: (e: grpc.ServiceError | null, r: unknown) => void,
        ) => void;
        // The trace context travels in the call's metadata (W3C traceparent), when there is one.
        const traceparent = currentTraceparent();
        let md = metadata;
        if (traceparent) {
          md = metadata.clone();
          md.set('traceparent', traceparent);
        }
        method.call(raw, type.fromPartial(request), md, callOptions, (error, response) =>
          error ? reject(error) : resolve(response),
        );
      });
    api[name] = (request: unknown, options: CallOptions = {}) =>
      tracingEnabled()
        ? inSpan('credits-ledger-client', `credits.ledger.v1.LedgerService/${rpc}`, { kind: SpanKind.CLIENT, attributes: { 'rpc.system': 'grpc', 'rpc.method': rpc } }, () => call(request, options))
        : call(request, options);
  }
  async function* streamJournal(fromEntryId: bigint, signal?: AbortSignal): AsyncIterable<pb.Entry> {
    const call = raw.streamJournal({ fromEntryId }, metadata);
    const cancel = () => call.cancel();
    signal?.addEventListener('abort', cancel);
    try {
      for await (const message of call as AsyncIterable<pb.StreamJournalResponse>) {
        if (message.entry) yield message.entry;
      }
    } catch (error) {
      if ((error as grpc.ServiceError).code !== grpc.status.CANCELLED || !signal?.aborted) throw error;
    } finally {
      signal?.removeEventListener('abort', cancel);
      call.cancel();
    }
  }
  return Object.assign(api as LedgerApi, { streamJournal, close: () => raw.close(), raw });
}
