// The Wavespeed simulator's composition root: parse the configuration once, serve, stop on
// SIGTERM/SIGINT. Used by tests (as a child process), the worker bench and `npm start`.
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { hostPort, intFromEnv, parseEnv } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { exitOnSignal } from '../lib/signals.js';
import { defaultModels, WavespeedSimulator } from './simulator.js';

export const simulatorConfigSchema = z.object({
  WAVESPEED_SIM_ADDR: hostPort('127.0.0.1:8787'),
  // The key callers must present, and the webhook secret: secrets, no defaults.
  WAVESPEED_API_KEY: z.string().min(8, 'at least 8 characters'),
  WAVESPEED_WEBHOOK_SECRET: z.string().regex(/^whsec_.{8,}$/, 'whsec_ followed by at least 8 characters'),
  WAVESPEED_SIM_LATENCY_MS: intFromEnv(2_000, 0, 3_600_000),
  // Submits per minute before 429; unset: no limit.
  WAVESPEED_SIM_RATE_PER_MIN: z.coerce.number().int().min(1).max(10_000_000).optional(),
  WAVESPEED_SIM_BALANCE_MICROS: z
    .string()
    .regex(/^\d{1,18}$/, 'a whole number of micro-dollars')
    .default('1000000000')
    .transform((s) => BigInt(s)),
});

export async function startSimulator(
  env: Record<string, string | undefined>,
  log: Logger = createLogger('wavespeed-simulator'),
): Promise<{ simulator: WavespeedSimulator; port: number }> {
  const c = parseEnv('wavespeed-simulator', simulatorConfigSchema, env);
  const simulator = new WavespeedSimulator({
    apiKey: c.WAVESPEED_API_KEY,
    webhookSecret: c.WAVESPEED_WEBHOOK_SECRET,
    latencyMs: c.WAVESPEED_SIM_LATENCY_MS,
    ratePerMin: c.WAVESPEED_SIM_RATE_PER_MIN ?? null,
    balanceMicros: c.WAVESPEED_SIM_BALANCE_MICROS,
    models: defaultModels,
  });
  const [host, portText] = [c.WAVESPEED_SIM_ADDR.slice(0, c.WAVESPEED_SIM_ADDR.lastIndexOf(':')), c.WAVESPEED_SIM_ADDR.slice(c.WAVESPEED_SIM_ADDR.lastIndexOf(':') + 1)];
  const port = await simulator.listen(Number(portText), host.replace(/^\[|\]$/g, ''));
  // One line that supervisors and tests wait for, whatever LOG_LEVEL says.
  log.child({}, { level: 'info' }).info({ port, latencyMs: c.WAVESPEED_SIM_LATENCY_MS }, 'ready');
  return { simulator, port };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const log = createLogger('wavespeed-simulator');
  startSimulator(process.env, log).then(
    ({ simulator }) => exitOnSignal(log, () => simulator.close()),
    (error: unknown) => {
      log.fatal({ err: error }, 'simulator failed to start');
      process.exit(1);
    },
  );
}
