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

function retryAfterMs(header: string | null): number | null {
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 3_600) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/** The error code under fetch's generic "fetch failed" TypeError. */
function causeCode(error: unknown): string {
  const cause = (error as { cause?: { code?: string } }).cause;
  return cause?.code ?? (error as { name?: string }).name ?? 'unknown';
}

async function bodyMessage(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 500);
  } catch {
    // Not JSON: the raw text says enough.
  }
  return text.slice(0, 500);
}

export class WavespeedClient {
  readonly #base: string;
  readonly #headers: Record<string, string>;

  constructor(private readonly options: WavespeedClientOptions) {
    this.#base = options.baseUrl.replace(/\/+$/, '');
    this.#headers = { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' };
  }

  async submit(model: string, input: Record<string, unknown>, webhookUrl?: string): Promise<SubmitOutcome> {
    const query = webhookUrl ? `?webhook=${encodeURIComponent(webhookUrl)}` : '';
    let response: Response;
    try {
      response = await fetch(`${this.#base}/api/v3/${model}${query}`, {
        method: 'POST',
        headers: this.#headers,
        body: JSON.stringify(input),
        signal: AbortSignal.timeout(this.options.submitTimeoutMs),
      });
    } catch (error) {
      const code = causeCode(error);
      // Only a refused connection proves the request never reached Wavespeed.
      if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { kind: 'not-sent', error: code };
      return { kind: 'unknown', error: code };
    }
    if (response.status >= 500) {
      await response.arrayBuffer().catch(() => undefined);
      return { kind: 'unknown', error: `HTTP ${response.status}` };
    }
    if (!response.ok) {
      return {
        kind: 'refused',
        status: response.status,
        message: await bodyMessage(response),
        retryAfterMs: retryAfterMs(response.headers.get('retry-after')),
      };
    }
    try {
      const body = (await response.json()) as { data?: { id?: unknown } };
      if (typeof body.data?.id === 'string' && body.data.id.length > 0) return { kind: 'created', predictionId: body.data.id };
      return { kind: 'unknown', error: 'answer without data.id' };
    } catch (error) {
      return { kind: 'unknown', error: `unreadable answer: ${causeCode(error)}` };
    }
  }

  async result(predictionId: string): Promise<ResultOutcome> {
    let response: Response;
    try {
      response = await fetch(`${this.#base}/api/v3/predictions/${encodeURIComponent(predictionId)}/result`, {
        headers: this.#headers,
        signal: AbortSignal.timeout(this.options.readTimeoutMs),
      });
    } catch (error) {
      return { kind: 'retry', retryAfterMs: null, why: causeCode(error) };
    }
    if (response.status === 429 || response.status >= 500) {
      await response.arrayBuffer().catch(() => undefined);
      return { kind: 'retry', retryAfterMs: retryAfterMs(response.headers.get('retry-after')), why: `HTTP ${response.status}` };
    }
    if (response.status === 404) {
      await response.arrayBuffer().catch(() => undefined);
      return { kind: 'not-found' };
    }
    if (!response.ok) return { kind: 'refused', status: response.status, message: await bodyMessage(response) };
    try {
      const body = (await response.json()) as { data?: { status?: unknown; outputs?: unknown; error?: unknown } };
      const data = body.data ?? {};
      return {
        kind: 'task',
        status: typeof data.status === 'string' ? data.status : 'unknown',
        outputs: Array.isArray(data.outputs) ? data.outputs.filter((o): o is string => typeof o === 'string') : [],
        error: typeof data.error === 'string' ? data.error : '',
      };
    } catch (error) {
      return { kind: 'retry', retryAfterMs: null, why: `unreadable answer: ${causeCode(error)}` };
    }
  }

  /**
   * One page (≤ 100, newest first) of the account's predictions of `model` created in
   * [from, to]. Throws on any failure: the caller decides when to ask again.
   */
  async listPredictions(model: string, fromMs: number, toMs: number, page: number): Promise<{ items: ListedPrediction[]; total: number }> {
    const response = await fetch(`${this.#base}/api/v3/predictions`, {
      method: 'POST',
      headers: this.#headers,
      body: JSON.stringify({
        page,
        page_size: 100,
        model,
        created_after: new Date(fromMs).toISOString(),
        created_before: new Date(toMs).toISOString(),
      }),
      signal: AbortSignal.timeout(this.options.readTimeoutMs),
    });
    if (!response.ok) throw new Error(`prediction listing: HTTP ${response.status}: ${await bodyMessage(response)}`);
    const body = (await response.json()) as { data?: { total?: number; items?: { id: string; model: string; status: string; created_at: string }[] } };
    const items = (body.data?.items ?? []).map((i) => ({ id: i.id, model: i.model, status: i.status, createdAtMs: Date.parse(i.created_at) }));
    return { items, total: body.data?.total ?? items.length };
  }
}
