import { status as grpcStatus } from '@grpc/grpc-js';
import type pg from 'pg';
import type { Clock } from '../lib/clock.js';
import { createPrisma, type PrismaClient } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { AuditServiceService } from '../generated/proto/credits/ledger/v1/audit.js';
import { LedgerServiceService } from '../generated/proto/credits/ledger/v1/ledger.js';
import type { LedgerConfig } from './config.js';
import type { PlatformAccounts } from './domain/ledger-state.js';
import { executeBatch } from './execute-batch.js';
import { auditServiceHandlers } from './grpc/audit-service.js';
import { Authenticator } from './grpc/auth.js';
import { ledgerServiceHandlers } from './grpc/ledger-service.js';
import { GrpcServer, type ServerTls, type ServiceBinding } from './grpc/server.js';
import { StreamSlots } from './grpc/stream-slots.js';
import { ExpirySweeper } from './expiry-sweeper.js';
import { HealthMonitor } from './health-monitor.js';
import { LedgerMetrics } from './metrics.js';
import { HoldSweeper } from './hold-sweeper.js';
import { BatchConnection } from './store/batch-connection.js';
import { ensurePlatformAccounts } from './store/platform-accounts.js';
import { EntryReader } from './store/read-entries.js';
import { WriteQueue } from './write-queue.js';

export type LedgerOptions = Omit<
  LedgerConfig,
  'databaseUrl' | 'dbPoolSize' | 'dbReadPoolSize' | 'dbReadStatementTimeoutMs' | 'dbTimeouts' | 'metricsAddr' | 'tlsFiles'
> & {
  /** Server TLS material (PEM); absent: plaintext. */
  tls?: ServerTls | null;
};

/** The pools are the caller's (pools.ts says which work goes where, and why). */
export interface LedgerDeps {
  /** GetBalance, Quote, start-up, the metrics scrape and Prisma. */
  pool: pg.Pool;
  /** The batch writer's connections, pipelined (createPool's `pipeline`); `pool` when absent. */
  writePool?: pg.Pool;
  /** Journal reads and AuditService, with the read statement timeout; `pool` when absent. */
  readPool?: pg.Pool;
  /** The sweepers and the health probe; `pool` when absent. */
  backgroundPool?: pg.Pool;
  clock: Clock;
  log: Logger;
  options: LedgerOptions;
}

/**
 * The ledger process's parts, wired: write queue → batch executor → PostgreSQL, the hold
 * sweeper, and the gRPC server. main.ts builds the dependencies; tests build them too, with a
 * manual clock, and listen on 127.0.0.1:0.
 */
export class Ledger {
  readonly queue: WriteQueue;
  readonly sweeper: HoldSweeper;
  readonly expirySweeper: ExpirySweeper;
  readonly health: HealthMonitor;
  readonly metrics: LedgerMetrics;
  readonly streams: StreamSlots;
  #serving = false;
  readonly grpc: GrpcServer;
  readonly prisma: PrismaClient;
  readonly platform: PlatformAccounts;
  readonly #deps: LedgerDeps;
  #port = 0;

  private constructor(deps: LedgerDeps, platform: PlatformAccounts) {
    const { pool, clock, log, options } = deps;
    const readPool = deps.readPool ?? pool;
    const backgroundPool = deps.backgroundPool ?? pool;
    this.#deps = deps;
    this.platform = platform;
    const holdPolicy = {
      holdTtlMsDefault: options.holdTtlMsDefault,
      holdTtlMsMax: options.holdTtlMsMax,
      holdLifetimeMsMax: options.holdLifetimeMsMax,
    };
    const connection = new BatchConnection(deps.writePool ?? pool);
    const writeRefusal = () => this.health.writeRefusal();
    this.queue = new WriteQueue({
      execute: (items) => executeBatch({ connection, platform, clock, holdPolicy, log, writeRefusal }, items),
      batchSizeMax: options.batchSizeMax,
      queueLengthMax: options.queueLengthMax,
      onIdle: () => connection.release(),
      onBatch: (size, seconds) => {
        this.metrics.batchSize.observe(size);
        this.metrics.batchSeconds.observe(seconds);
      },
    });
    this.sweeper = new HoldSweeper({
      pool: backgroundPool,
      queue: this.queue,
      clock,
      log,
      periodMs: options.holdSweepPeriodMs,
      batchMax: options.holdSweepBatchMax,
    });
    this.expirySweeper = new ExpirySweeper({
      pool: backgroundPool,
      queue: this.queue,
      clock,
      log,
      periodMs: options.expirySweepPeriodMs,
      batchMax: options.expirySweepBatchMax,
    });
    this.prisma = createPrisma(pool);
    this.streams = new StreamSlots(options.streamsMax);
    const handlers = ledgerServiceHandlers({
      queue: this.queue,
      reader: new EntryReader(readPool),
      pool,
      streams: this.streams,
      clock,
      validation: { currencies: new Set(options.currencies), ...holdPolicy },
    });
    const services: ServiceBinding[] = [
      {
        name: 'credits.ledger.v1.LedgerService',
        definition: LedgerServiceService,
        handlers: handlers as unknown as ServiceBinding['handlers'],
      },
      {
        name: 'credits.ledger.v1.AuditService',
        definition: AuditServiceService,
        handlers: auditServiceHandlers({ pool: readPool, clock, wavespeed: options.wavespeed ?? null }) as unknown as ServiceBinding['handlers'],
      },
    ];
    this.metrics = new LedgerMetrics({
      pool,
      queueLength: () => this.queue.length,
      streamsOpen: () => this.streams.open,
      serving: () => this.#serving,
      clockSkewMs: () => this.health.skewMs,
    });
    this.grpc = new GrpcServer(
      {
        auth: new Authenticator(options.credentials),
        log,
        onCallEnd: (method, code, seconds) => {
          this.metrics.recordCall(method, grpcStatus[code] ?? String(code), seconds);
        },
      },
      services,
    );
    this.health = new HealthMonitor({
      pool: backgroundPool,
      clock,
      log,
      periodMs: options.healthCheckPeriodMs,
      writerStuckMs: options.writerStuckMs,
      clockSkewMsMax: options.clockSkewMsMax,
      batchAgeMs: () => this.queue.batchAgeMs(),
      setServing: (serving) => {
        this.#serving = serving;
        this.grpc.setServing(serving);
      },
    });
  }

  static async create(deps: LedgerDeps): Promise<Ledger> {
    const platform = await ensurePlatformAccounts(deps.pool, deps.options.currencies);
    return new Ledger(deps, platform);
  }

  get port(): number {
    return this.#port;
  }

  /** What grpc.health.v1 reports for the whole server: true while SERVING. */
  get serving(): boolean {
    return this.#serving;
  }

  /** Listens on the configured address (or `address`), starts the sweeper, returns the port. */
  async start(address = this.#deps.options.grpcAddr, sweeper = true): Promise<number> {
    this.#port = await this.grpc.listen(address, this.#deps.options.tls ?? null);
    this.#serving = true;
    this.health.start();
    if (sweeper) {
      this.sweeper.start();
      this.expirySweeper.start();
    }
    this.#deps.log.info({ address, port: this.#port }, 'ledger listening');
    return this.#port;
  }

  /**
   * Drains: NOT_SERVING, no new calls, calls in flight answered, the queue emptied, the sweeper
   * stopped. The pool belongs to the caller and is closed by it.
   */
  async stop(): Promise<void> {
    await this.health.stop();
    this.#serving = false;
    await this.sweeper.stop();
    await this.expirySweeper.stop();
    await this.grpc.drain(this.#deps.options.drainGraceMs);
    await this.queue.close();
    await this.prisma.$disconnect();
  }
}
