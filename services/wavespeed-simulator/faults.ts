import { z } from 'zod';

/**
 * Fault injection for the simulator, controlled per test through `POST /__sim/faults`. A rule
 * matches requests of one operation (optionally of one model) and applies to the next `count`
 * of them (`count: -1`: until cleared). Rules are consumed in the order they were added.
 */
export const operations = ['submit', 'result', 'list', 'balance', 'billing'] as const;
export type Operation = (typeof operations)[number];

export const faultActionSchema = z.discriminatedUnion('kind', [
  // Answer with this HTTP status (and Wavespeed's error body); no task is created.
  z.object({
    kind: z.literal('status'),
    status: z.number().int().min(400).max(599),
    message: z.string().max(500).optional(),
    retryAfterS: z.number().int().min(0).max(3_600).optional(),
  }),
  // Close the connection without answering, before the task exists (a lost request).
  z.object({ kind: z.literal('reset-before-create') }),
  // Create the task, then close the connection without answering (the unknown outcome).
  z.object({ kind: z.literal('reset-after-create') }),
  // Hold the answer back this long (after creating the task, for a submit).
  z.object({ kind: z.literal('delay'), ms: z.number().int().min(0).max(600_000) }),
  // The created task ends in this status instead of `completed`.
  z.object({
    kind: z.literal('outcome'),
    status: z.enum(['failed', 'cancelled', 'timeout']),
    error: z.string().max(500).optional(),
  }),
  // The created task takes this long instead of the configured latency.
  z.object({ kind: z.literal('latency'), ms: z.number().int().min(0).max(3_600_000) }),
]);
export type FaultAction = z.infer<typeof faultActionSchema>;

export const faultRuleSchema = z.object({
  op: z.enum(operations),
  model: z.string().min(1).max(200).optional(),
  action: faultActionSchema,
  count: z.number().int().min(-1).max(1_000_000).default(1),
});
export type FaultRule = z.infer<typeof faultRuleSchema>;

export class FaultTable {
  #rules: FaultRule[] = [];

  add(rules: FaultRule[]): void {
    this.#rules.push(...rules.map((r) => ({ ...r })));
  }

  clear(): void {
    this.#rules = [];
  }

  get size(): number {
    return this.#rules.length;
  }

  /**
   * Takes the first rule for `op` (and `model`, when the rule names one) whose action is one of
   * `kinds`, consuming one of its uses; null when none applies.
   */
  take(op: Operation, model: string | null, kinds: readonly FaultAction['kind'][]): FaultAction | null {
    for (let i = 0; i < this.#rules.length; i++) {
      const rule = this.#rules[i]!;
      if (rule.op !== op || !kinds.includes(rule.action.kind)) continue;
      if (rule.model !== undefined && rule.model !== model) continue;
      if (rule.count > 0) {
        rule.count -= 1;
        if (rule.count === 0) this.#rules.splice(i, 1);
      }
      return rule.action;
    }
    return null;
  }
}
