import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/**
 * The model table: what each Wavespeed model costs the user (credits) and what it is expected
 * to cost us upstream (micros of `currency`), and the input fields it accepts. Validated once
 * at start; a job for a model not in it, or with input it does not describe, fails at once.
 */

const fieldSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('url'), required: z.boolean() }),
  z.object({ type: z.literal('string'), required: z.boolean(), maxLength: z.number().int().min(1).max(100_000).default(10_000) }),
  z.object({ type: z.literal('enum'), required: z.boolean(), values: z.array(z.string().min(1)).min(1) }),
  z.object({ type: z.literal('integer'), required: z.boolean(), min: z.number().int(), max: z.number().int() }),
]);

const modelSchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*){1,3}$/, 'owner/name[/variant]'),
  creditsPrice: z.number().int().min(1).max(1_000_000).transform((n) => BigInt(n)),
  upstreamCostMicros: z.number().int().min(0).max(1_000_000_000).transform((n) => BigInt(n)),
  currency: z.string().regex(/^[A-Z]{3}$/, 'ISO 4217 code').default('USD'),
  input: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/), fieldSchema).refine((f) => Object.keys(f).length > 0, 'at least one field'),
});

export const modelTableSchema = z
  .object({ models: z.array(modelSchema).min(1).max(1_000) })
  .refine((t) => new Set(t.models.map((m) => m.id)).size === t.models.length, 'model ids must be unique');

export type ModelEntry = z.infer<typeof modelSchema>;

export class ModelTable {
  readonly #byId: Map<string, ModelEntry>;

  constructor(models: ModelEntry[]) {
    this.#byId = new Map(models.map((m) => [m.id, m]));
  }

  get(id: string): ModelEntry | undefined {
    return this.#byId.get(id);
  }

  get ids(): string[] {
    return [...this.#byId.keys()];
  }
}

export const defaultModelsFile = path.join(path.dirname(fileURLToPath(import.meta.url)), 'models.default.json');

/** Parses a model table (JSON text); throws an error naming the file and the bad field. */
export function parseModelTable(text: string, source: string): ModelTable {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not valid JSON (${(error as Error).message})`);
  }
  const parsed = modelTableSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(table)'}: ${i.message}`);
    throw new Error(`${source}: invalid model table:\n  ${problems.join('\n  ')}`);
  }
  return new ModelTable(parsed.data.models);
}

export function loadModelTable(file: string = defaultModelsFile): ModelTable {
  return parseModelTable(readFileSync(file, 'utf8'), file);
}

// No whitespace or control characters (NUL included) anywhere in a URL we pass upstream.
const urlPattern = /^https?:\/\/[^\s\u0000-\u001f\u007f]+$/;

/** Checks a job's input against its model's fields: null when fine, else a message naming the field. */
export function inputProblem(model: ModelEntry, input: Record<string, unknown>): string | null {
  for (const key of Object.keys(input)) {
    if (!(key in model.input)) return `input.${key}: not an input of ${model.id}`;
  }
  for (const [key, field] of Object.entries(model.input)) {
    const value = input[key];
    if (value === undefined || value === null) {
      if (field.required) return `input.${key}: required`;
      continue;
    }
    switch (field.type) {
      case 'url':
        if (typeof value !== 'string' || value.length > 4_096 || !urlPattern.test(value) || !URL.canParse(value)) {
          return `input.${key}: must be an http(s) URL`;
        }
        break;
      case 'string':
        if (typeof value !== 'string' || value.length === 0 || value.length > field.maxLength || value.includes('\u0000')) {
          return `input.${key}: must be a non-empty string of at most ${field.maxLength} characters without NUL`;
        }
        break;
      case 'enum':
        if (typeof value !== 'string' || !field.values.includes(value)) return `input.${key}: must be one of ${field.values.join(', ')}`;
        break;
      case 'integer':
        if (!Number.isInteger(value) || (value as number) < field.min || (value as number) > field.max) {
          return `input.${key}: must be an integer in [${field.min}, ${field.max}]`;
        }
        break;
    }
  }
  return null;
}
