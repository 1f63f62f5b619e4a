import { createHmac, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Redis } from 'ioredis';

/**
 * Wavespeed's webhooks, used to resolve a submit whose answer was lost: each submit carries
 * `?webhook=<public URL>?request_id=R&attempt=N`, so when its task finishes Wavespeed tells us
 * which prediction belongs to which request, something the prediction listing cannot. The
 * receiver checks the signature (HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{raw body}`
 * keyed with the secret minus `whsec_`, sent as `v3,<hex>`; at most 5 minutes old), then keeps
 * the task in Redis for every worker process to read.
 */

export const webhookPath = '/wavespeed/webhook';
const maxAgeS = 300;
const bodyLimitBytes = 1_000_000;

export interface WebhookTask {
  id: string;
  status: string;
  outputs: string[];
  error: string;
}

/** True when `signature` is Wavespeed's signature of this delivery under `secret`. */
export function webhookSignatureValid(secret: string, id: string, timestamp: string, body: string, signature: string, nowS: number): boolean {
  if (!/^\d{1,12}$/.test(timestamp) || Math.abs(nowS - Number(timestamp)) > maxAgeS) return false;
  const key = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  const expected = Buffer.from(`v3,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('hex')}`);
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export class WebhookInbox {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    /** The public URL of this receiver, as Wavespeed should call it. */
    private readonly publicUrl: string,
    private readonly secret: string,
  ) {}

  #key(requestId: string, attempt: number): string {
    return `${this.prefix}:enhancements:webhook:${requestId}:${attempt}`;
  }

  /** The webhook URL for one submit attempt of one request. */
  urlFor(requestId: string, attempt: number): string {
    const url = new URL(this.publicUrl);
    url.searchParams.set('request_id', requestId);
    url.searchParams.set('attempt', String(attempt));
    return url.toString();
  }

  async get(requestId: string, attempt: number): Promise<WebhookTask | null> {
    const raw = await this.redis.get(this.#key(requestId, attempt));
    return raw === null ? null : (JSON.parse(raw) as WebhookTask);
  }

  /** Handles `POST /wavespeed/webhook?request_id=R&attempt=N`: 204 stored, 401 bad signature, 400 malformed. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > bodyLimitBytes) {
        res.writeHead(413).end();
        req.socket.destroy();
        return;
      }
      chunks.push(chunk);
    }
    const body = Buffer.concat(chunks).toString('utf8');
    const header = (name: string) => {
      const v = req.headers[name];
      return typeof v === 'string' ? v : '';
    };
    if (!webhookSignatureValid(this.secret, header('webhook-id'), header('webhook-timestamp'), body, header('webhook-signature'), Math.floor(Date.now() / 1000))) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('invalid webhook signature');
      return;
    }
    const query = new URL(req.url ?? '/', 'http://receiver').searchParams;
    const requestId = query.get('request_id') ?? '';
    const attempt = Number(query.get('attempt'));
    let task: WebhookTask;
    try {
      const parsed = JSON.parse(body) as { id?: unknown; status?: unknown; outputs?: unknown; error?: unknown };
      if (typeof parsed.id !== 'string' || typeof parsed.status !== 'string') throw new Error('id and status are required');
      task = {
        id: parsed.id,
        status: parsed.status,
        outputs: Array.isArray(parsed.outputs) ? parsed.outputs.filter((o): o is string => typeof o === 'string') : [],
        error: typeof parsed.error === 'string' ? parsed.error : '',
      };
    } catch (error) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`malformed webhook body: ${(error as Error).message}`);
      return;
    }
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(requestId) || !Number.isInteger(attempt) || attempt < 1) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('request_id and attempt are required in the query');
      return;
    }
    // SET with the retention of Wavespeed's tasks plus a day; a redelivery writes the same.
    await this.redis.set(this.#key(requestId, attempt), JSON.stringify(task), 'EX', 8 * 24 * 3600);
    res.writeHead(204).end();
  }
}
