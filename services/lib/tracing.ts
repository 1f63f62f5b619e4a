import {
  context,
  propagation,
  trace,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

/**
 * OpenTelemetry traces across the services (HTTP → gRPC → BullMQ → Wavespeed), off unless an
 * OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
 * the standard variables). Context travels in W3C `traceparent`: HTTP headers, gRPC metadata,
 * a job's data, the payments inbox row. Spans are made by hand at those boundaries rather than by
 * auto-instrumentation, which needs module-loader hooks that do not fit these ESM/tsx processes.
 * Without an endpoint every call here is the API's no-op.
 */
export interface Tracing {
  enabled: boolean;
  shutdown(): Promise<void>;
}

let provider: NodeTracerProvider | null = null;

export function startTracing(service: string, env: Record<string, string | undefined>): Tracing {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces` : undefined);
  if (!endpoint || provider) return { enabled: provider !== null, shutdown: async () => {} };
  const current = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME ?? service }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }), { scheduledDelayMillis: 200 })],
  });
  // Registers the global tracer provider, the W3C trace-context propagator and an
  // AsyncLocalStorage context manager (so the active span follows awaits).
  current.register();
  provider = current;
  return {
    enabled: true,
    shutdown: async () => {
      await current.shutdown();
      if (provider === current) provider = null;
    },
  };
}

/** Whether this process exports traces (spans are skipped entirely when not). */
export function tracingEnabled(): boolean {
  return provider !== null;
}

export function tracer(name: string): Tracer {
  return trace.getTracer(name);
}

/** Runs `fn` in a span (made current for it), ending it with the outcome. */
export async function inSpan<T>(
  tracerName: string,
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer(tracerName).startActiveSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes }, parent, async (span) => {
    try {
      const result = await fn(span);
      span.setStatus({ code: SpanStatusCode.OK });
      return result;
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** The current context as a W3C `traceparent` (null when there is no sampled span). */
export function currentTraceparent(): string | null {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ?? null;
}

/** A context continuing the trace of a `traceparent` (the active one when absent). */
export function contextFrom(traceparent: string | null | undefined): Context {
  if (!traceparent) return context.active();
  return propagation.extract(context.active(), { traceparent });
}

export { SpanKind, SpanStatusCode };
