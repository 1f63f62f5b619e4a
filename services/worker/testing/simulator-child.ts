import { randomBytes } from 'node:crypto';
import { startChild, type Child } from '../../testing/child-process.js';

/**
 * The Wavespeed simulator (services/wavespeed-simulator) as a child process on 127.0.0.1:0,
 * driven through its HTTP controls (`/__sim/…`) like any other client would.
 */

export interface FaultRule {
  op: 'submit' | 'result' | 'list' | 'balance' | 'billing';
  model?: string;
  action:
    | { kind: 'status'; status: number; message?: string; retryAfterS?: number }
    | { kind: 'reset-before-create' }
    | { kind: 'reset-after-create' }
    | { kind: 'delay'; ms: number }
    | { kind: 'outcome'; status: 'failed' | 'cancelled' | 'timeout'; error?: string }
    | { kind: 'latency'; ms: number };
  count?: number;
}

export interface SimTask {
  id: string;
  model: string;
  input: Record<string, unknown>;
  status: string;
  resultReads: number;
  priceMicros: string;
}

export interface SimStats {
  submits: number;
  tasksCreated: number;
  resultReads: number;
  listCalls: number;
  rateLimited: number;
  balanceMicros: string;
  chargedMicros: string;
  responses: Record<string, number>;
}

export interface SimulatorChild {
  url: string;
  apiKey: string;
  webhookSecret: string;
  process: Child;
  faults(rules: FaultRule[]): Promise<void>;
  clearFaults(): Promise<void>;
  configure(config: { latencyMs?: number; ratePerMin?: number | null; burst?: number; balanceMicros?: string }): Promise<void>;
  stats(): Promise<SimStats>;
  tasks(): Promise<SimTask[]>;
  billings(predictionIds?: string[]): Promise<{ uuid: string; price: number; prediction: { uuid: string; model_uuid: string } }[]>;
  stop(): Promise<void>;
}

export async function startSimulatorChild(options: { latencyMs?: number; ratePerMin?: number } = {}): Promise<SimulatorChild> {
  const apiKey = `ws-${randomBytes(12).toString('hex')}`;
  const webhookSecret = `whsec_${randomBytes(18).toString('base64url')}`;
  const child = await startChild('services/wavespeed-simulator/main.ts', {
    WAVESPEED_SIM_ADDR: '127.0.0.1:0',
    WAVESPEED_API_KEY: apiKey,
    WAVESPEED_WEBHOOK_SECRET: webhookSecret,
    WAVESPEED_SIM_LATENCY_MS: String(options.latencyMs ?? 300),
    ...(options.ratePerMin ? { WAVESPEED_SIM_RATE_PER_MIN: String(options.ratePerMin) } : {}),
  });
  const url = `http://127.0.0.1:${child.ready.port as number}`;
  const control = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${url}/__sim/${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await response.json()) as unknown;
    if (!response.ok) throw new Error(`simulator ${path}: HTTP ${response.status}: ${JSON.stringify(json)}`);
    return json;
  };
  return {
    url,
    apiKey,
    webhookSecret,
    process: child,
    async faults(rules) {
      await control('POST', 'faults', { rules });
    },
    async clearFaults() {
      await control('DELETE', 'faults');
    },
    async configure(config) {
      await control('POST', 'config', config);
    },
    stats: async () => (await control('GET', 'stats')) as SimStats,
    tasks: async () => ((await control('GET', 'tasks')) as { tasks: SimTask[] }).tasks,
    async billings(predictionIds) {
      const response = await fetch(`${url}/api/v3/billings/search`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ page: 1, page_size: 100, ...(predictionIds ? { prediction_uuids: predictionIds } : {}) }),
      });
      return ((await response.json()) as { data: { items: never[] } }).data.items;
    },
    async stop() {
      await child.stop();
    },
  };
}
