import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout, one object per line, with the service's name on each. */
export function createLogger(service: string, level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ base: { service }, level, timestamp: pino.stdTimeFunctions.isoTime });
}
