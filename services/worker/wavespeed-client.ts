import { currentTraceparent, inSpan, SpanKind, tracingEnabled } from '../lib/tracing.js';
import { HttpJsonClient, type HttpError, type HttpJsonResponse } from './http-json.js';

/**
 * Wavespeed's REST API (v3) as the worker uses it, following its documented contract and its
 * SDKs' rules: a submit is sent once and never retried here (the task may exist even when no
 * answer came back), result reads are safe to repeat. Every call has a timeout.
 */

export type SubmitOutcome =
  /** Wavespeed answered with the new task. */
  | { kind: 'created'; predictionId: string }
  /** Wavespeed answered and created nothing (4xx, including 429 with its Retry-After). */
  | { kind: 'refused'; status: number; message: string; retryAfterMs: number | null }
  /** The request never left (connection refused): nothing was created, it may be sent again. */
  | { kind: 'not-sent'; error: string }
  /** Sent, and no usable answer (reset, timeout, 5xx): the task may or may not exist. */
  | { kind: 'unknown'; error: string };

export type ResultOutcome =
  | { kind: 'task'; status: string; outputs: string[]; error: string }
  /** 429, 5xx or a connection problem: ask again later (after `retryAfterMs` when given). */
  | { kind: 'retry'; retryAfterMs: number | null; why: string }
  | { kind: 'not-found' }
  | { kind: 'refused'; status: number; message: string };

export interface ListedPrediction {
  id: string;
  model: string;
  status: string;
  createdAtMs: number;
}

export interface WavespeedClientOptions {
  /** The host, as Wavespeed's SDK takes it (`https://api.wavespeed.ai`). */
  baseUrl: string;
  apiKey: string;
  submitTimeoutMs: number;
  readTimeoutMs: number;
}

export const finalStatuses = new Set(['completed', 'failed', 'cancelled', 'timeout']);

function retryAfterMs(header: string | string[] | undefined): number | null {
  if (header === undefined || Array.isArray(header)) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 3_600) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

function messageOf(text: string): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 500);
  } catch {
    // Not JSON: the raw text says enough.
  }
  return text.slice(0, 500);
}

/** Codes that prove the request never reached the server. */
const notSentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN']);

export class WavespeedClient {
  readonly #http: HttpJsonClient;
  readonly #headers: Record<string, string>;

  constructor(private readonly options: WavespeedClientOptions) {
    this.#http = new HttpJsonClient(options.baseUrl);
    this.#headers = { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' };
  }

  close(): void {
    this.#http.close();
  }

  /**
   * One HTTP call to Wavespeed, in a CLIENT span when tracing is on, with the trace context in
   * a `traceparent` header (W3C trace context).
   */
  #request(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<HttpJsonResponse> {
    const send = () => {
      const traceparent = currentTraceparent();
      return this.#http.request(method, path, traceparent ? { ...headers, traceparent } : headers, body, timeoutMs);
    };
    if (!tracingEnabled()) return send();
    return inSpan('worker', `wavespeed ${method} ${path.split('?')[0]!.replace(/\/predictions\/[^/]+/, '/predictions/{id}')}`, { kind: SpanKind.CLIENT, attributes: { 'http.request.method': method, 'server.address': this.options.baseUrl } }, async (span) => {
      const response = await send();
      span.setAttribute('http.response.status_code', response.status);
      return response;
    });
  }

  async submit(model: string, input: Record<string, unknown>, webhookUrl?: string): Promise<SubmitOutcome> {
    const query = webhookUrl ? `?webhook=${encodeURIComponent(webhookUrl)}` : '';
    let response: HttpJsonResponse;
    try {
      response = await this.#request('POST', `/api/v3/${model}${query}`, this.#headers, JSON.stringify(input), this.options.submitTimeoutMs);
    } catch (error) {
      const code = (error as HttpError).code ?? 'UNKNOWN';
      // Only a refused connection proves the request never reached Wavespeed.
      return notSentCodes.has(code) ? { kind: 'not-sent', error: code } : { kind: 'unknown', error: code };
    }
    if (response.status >= 500) return { kind: 'unknown', error: `HTTP ${response.status}` };
    if (response.status < 200 || response.status >= 300) {
      return { kind: 'refused', status: response.status, message: messageOf(response.text), retryAfterMs: retryAfterMs(response.headers['retry-after']) };
    }
    try {
      const body = JSON.parse(response.text) as { data?: { id?: unknown } };
      if (typeof body.data?.id === 'string' && body.data.id.length > 0) return { kind: 'created', predictionId: body.data.id };
      return { kind: 'unknown', error: 'answer without data.id' };
    } catch {
      return { kind: 'unknown', error: 'unreadable answer' };
    }
  }

  async result(predictionId: string): Promise<ResultOutcome> {
    let response: HttpJsonResponse;
    try {
      response = await this.#request('GET', `/api/v3/predictions/${encodeURIComponent(predictionId)}/result`, this.#headers, undefined, this.options.readTimeoutMs);
    } catch (error) {
      return { kind: 'retry', retryAfterMs: null, why: (error as HttpError).code ?? 'UNKNOWN' };
    }
    if (response.status === 429 || response.status >= 500) {
      return { kind: 'retry', retryAfterMs: retryAfterMs(response.headers['retry-after']), why: `HTTP ${response.status}` };
    }
    if (response.status === 404) return { kind: 'not-found' };
    if (response.status < 200 || response.status >= 300) return { kind: 'refused', status: response.status, message: messageOf(response.text) };
    try {
      const data = (JSON.parse(response.text) as { data?: { status?: unknown; outputs?: unknown; error?: unknown } }).data ?? {};
      return {
        kind: 'task',
        status: typeof data.status === 'string' ? data.status : 'unknown',
        outputs: Array.isArray(data.outputs) ? data.outputs.filter((o): o is string => typeof o === 'string') : [],
        error: typeof data.error === 'string' ? data.error : '',
      };
    } catch {
      return { kind: 'retry', retryAfterMs: null, why: 'unreadable answer' };
    }
  }

  /** The account's webhook signing secret (`GET /api/v3/webhook/secret`, `whsec_…`). */
  async webhookSecret(): Promise<string> {
    const response = await this.#request('GET', '/api/v3/webhook/secret', this.#headers, undefined, this.options.readTimeoutMs);
    if (response.status !== 200) throw new Error(`webhook secret: HTTP ${response.status}: ${messageOf(response.text)}`);
    const secret = (JSON.parse(response.text) as { data?: { secret?: unknown } }).data?.secret;
    if (typeof secret !== 'string' || secret.length === 0) throw new Error('webhook secret: no data.secret in the answer');
    return secret;
  }

  /**
   * One page (≤ 100, newest first) of the account's predictions of `model` created in
   * [from, to]. Throws on any failure: the caller decides when to ask again.
   */
  async listPredictions(model: string, fromMs: number, toMs: number, page: number): Promise<{ items: ListedPrediction[]; total: number }> {
    const body = JSON.stringify({
      page,
      page_size: 100,
      model,
      created_after: new Date(fromMs).toISOString(),
      created_before: new Date(toMs).toISOString(),
    });
    const response = await this.#request('POST', '/api/v3/predictions', this.#headers, body, this.options.readTimeoutMs);
    if (response.status !== 200) throw new Error(`prediction listing: HTTP ${response.status}: ${messageOf(response.text)}`);
    const parsed = JSON.parse(response.text) as { data?: { total?: number; items?: { id: string; model: string; status: string; created_at: string }[] } };
    const items = (parsed.data?.items ?? []).map((i) => ({ id: i.id, model: i.model, status: i.status, createdAtMs: Date.parse(i.created_at) }));
    return { items, total: parsed.data?.total ?? items.length };
  }
}
