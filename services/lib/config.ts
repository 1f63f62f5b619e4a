import { z } from 'zod';

/**
 * Config helpers shared by every service: each service parses its environment once, at start,
 * with one zod schema, and a bad value stops the start-up with a message naming the variable.
 */

/** An integer variable with a default and bounds. */
export const intFromEnv = (fallback: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

/** `host:port` (IPv6 hosts in brackets); port 0 lets the OS pick. */
export const hostPort = (fallback: string) =>
  z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'host:port')
    .default(fallback);

/** Parses `env` with `schema`, or throws one error listing every bad variable. */
export function parseEnv<S extends z.ZodType>(
  service: string,
  schema: S,
  env: Record<string, string | undefined>,
): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new Error(`invalid ${service} configuration:\n  ${problems.join('\n  ')}`);
  }
  return parsed.data;
}
