import type { MachineInfo } from './proc-stat.js';
import type { ScenarioName } from './options.js';

/** What the bench measured for one scenario. CPU figures are per operation, in µs. */
export interface ScenarioFigures {
  name: ScenarioName;
  /** What one operation is, in words (the table says it). */
  operation: string;
  ops: number;
  opsPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Latency of each call, for operations made of several calls; null otherwise. */
  callP50Ms: number | null;
  callP99Ms: number | null;
  /** CPU of the process under test (ledger or no-op server); null for the baseline. */
  serverCpuUsPerOp: number | null;
  /** The kernel's part of serverCpuUsPerOp (system calls: sockets, mostly). */
  serverSysCpuUsPerOp: number | null;
  clientCpuUsPerOp: number;
  postgresCpuUsPerOp: number;
  /** Cores the whole machine kept busy during the window, and how many of them were spent
   * by processes the bench does not know (other work on the machine). */
  machineBusyCores: number;
  otherBusyCores: number;
  windowS: number;
  errors: Record<string, number>;
  firstError: string | null;
  callLimitHit: boolean;
  /** Ledger write scenarios: journal entries per PostgreSQL transaction (batch), whole run. */
  entriesPerBatch: number | null;
  /** ops/s of every round when the scenario ran more than once (--rounds); these figures are
   * the best round's. */
  roundsOpsPerS: number[];
}

export interface TargetCheck {
  name: string;
  measured: string;
  required: string;
  /** null when a scenario it needs was not run. */
  pass: boolean | null;
  /** A target issue 7 withdrew (the transport-ceiling ratios): still measured, never judged. */
  withdrawn?: true;
}

const fixed = (value: number | null, digits: number): string =>
  value === null || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);

const thousands = (value: number): string =>
  Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a';

export function figuresTable(rows: readonly ScenarioFigures[]): string {
  const header = [
    'scenario',
    'one op',
    'ops/s',
    'p50 ms',
    'p99 ms',
    'server CPU µs/op (sys)',
    'clients CPU µs/op',
    'PostgreSQL CPU µs/op',
    'machine busy cores (other)',
    'entries/batch',
    'errors',
  ];
  const lines = rows.map((r) => {
    const errorCount = Object.values(r.errors).reduce((s, n) => s + n, 0);
    const errors =
      errorCount === 0 ? '0' : Object.entries(r.errors).map(([name, n]) => `${name}×${n}`).join(' ');
    return [
      r.name + (r.callLimitHit ? ' (call limit hit)' : ''),
      r.operation,
      thousands(r.opsPerS),
      fixed(r.p50Ms, 2),
      fixed(r.p99Ms, 2),
      r.serverCpuUsPerOp === null ? 'n/a' : `${fixed(r.serverCpuUsPerOp, 1)} (${fixed(r.serverSysCpuUsPerOp, 1)})`,
      fixed(r.clientCpuUsPerOp, 1),
      fixed(r.postgresCpuUsPerOp, 1),
      `${fixed(r.machineBusyCores, 2)} (${fixed(r.otherBusyCores, 2)})`,
      fixed(r.entriesPerBatch, 1),
      errors,
    ];
  });
  return markdownTable(header, lines);
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  return markdownTable(
    ['target', 'measured', 'required', 'result'],
    checks.map((c) => [c.name, c.measured, c.required, c.withdrawn ? 'withdrawn' : c.pass === null ? 'n/a' : c.pass ? 'PASS' : 'FAIL']),
  );
}

export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The checks the issue sets, each PASS/FAIL, or n/a when its scenarios were not run. */
export function targetChecks(byName: ReadonlyMap<ScenarioName, ScenarioFigures>): TargetCheck[] {
  const transport = byName.get('transport');
  const baseline = byName.get('baseline');
  const uniform = byName.get('consume_uniform');
  const hot = byName.get('consume_hot_user');
  const checks: TargetCheck[] = [];

  const ratioCheck = (
    name: string,
    numerator: ScenarioFigures | undefined,
    denominator: ScenarioFigures | undefined,
    min: number,
    label: string,
    withdrawn?: true,
  ) => {
    if (!numerator || !denominator || denominator.opsPerS <= 0) {
      checks.push({ name, measured: 'n/a', required: `≥ ${label}`, pass: null, withdrawn });
      return;
    }
    const ratio = numerator.opsPerS / denominator.opsPerS;
    checks.push({
      name,
      measured: `${thousands(numerator.opsPerS)} / ${thousands(denominator.opsPerS)} = ${ratio.toFixed(2)}×`,
      required: `≥ ${label}`,
      pass: ratio >= min,
      withdrawn,
    });
  };
  // Issue 7 withdrew the three transport-ceiling targets (on two shared cores the load clients'
  // own CPU dominates those ratios) and raised the baseline ratio from 2× to 8×. The withdrawn
  // ones are still measured and shown, marked as such.
  ratioCheck('hot-user Consume ≥ 8× unbatched baseline (issue 7)', hot, baseline, 8, '8.00×');
  ratioCheck('uniform Consume ≥ 70% of transport ceiling', uniform, transport, 0.7, '0.70×', true);
  ratioCheck('hot-user Consume ≥ 60% of transport ceiling', hot, transport, 0.6, '0.60×', true);
  ratioCheck('Consume before ANALYZE ≥ 80% of after (issue 7 item 16)', byName.get('consume_before_analyze'), uniform, 0.8, '0.80×');
  ratioCheck('Consume with slow StreamJournal readers ≥ 80% of without (issue 7 item 12)', byName.get('consume_with_readers'), uniform, 0.8, '0.80×');

  for (const consume of [uniform, hot]) {
    const name = `ledger CPU per Consume (${consume?.name ?? '…'}) ≤ 1.5× no-op server CPU per call`;
    if (!consume || !transport || consume.serverCpuUsPerOp === null || !transport.serverCpuUsPerOp) {
      checks.push({ name, measured: 'n/a', required: '≤ 1.50×', pass: null, withdrawn: true });
      continue;
    }
    const ratio = consume.serverCpuUsPerOp / transport.serverCpuUsPerOp;
    checks.push({
      name,
      measured: `${consume.serverCpuUsPerOp.toFixed(1)} / ${transport.serverCpuUsPerOp.toFixed(1)} µs = ${ratio.toFixed(2)}×`,
      required: '≤ 1.50×',
      pass: ratio <= 1.5,
      withdrawn: true,
    });
  }

  for (const name of ['consume_uniform', 'consume_hot_user', 'reserve_capture', 'get_balance'] as const) {
    const figures = byName.get(name);
    // A command's latency is what the target is about: for reserve_capture that is each call's,
    // and the pair's is shown beside it.
    const perCall = figures?.callP99Ms ?? null;
    checks.push({
      name: `p99 < 50 ms (${name}${perCall === null ? '' : ', per call'})`,
      measured: !figures
        ? 'n/a'
        : perCall === null
          ? `${figures.p99Ms.toFixed(2)} ms`
          : `${perCall.toFixed(2)} ms (pair ${figures.p99Ms.toFixed(2)} ms)`,
      required: '< 50 ms',
      pass: figures ? (perCall ?? figures.p99Ms) < 50 : null,
    });
  }
  return checks;
}

/**
 * Not targets: the same comparisons against the no-op served by the ledger's own gRPC stack
 * (transport_stack), which separates what our server stack costs from what the ledger's work
 * costs. Empty when either side was not run.
 */
/**
 * How a user's cost grows with the lots they ever had (issue 7 item 17): each *_spent_lots
 * scenario against its one-lot twin of the same run, as ratios of ledger + PostgreSQL CPU per
 * operation and of throughput.
 */
export function growthLines(byName: ReadonlyMap<ScenarioName, ScenarioFigures>): string[] {
  const lines: string[] = [];
  const cpu = (f: ScenarioFigures) => (f.serverCpuUsPerOp ?? Number.NaN) + f.postgresCpuUsPerOp;
  for (const [spent, one] of [
    ['consume_spent_lots', 'consume_hot_user'],
    ['get_balance_spent_lots', 'get_balance'],
  ] as const) {
    const a = byName.get(spent);
    const b = byName.get(one);
    if (!a || !b) continue;
    lines.push(
      `- ${spent} vs ${one}: ledger+PostgreSQL CPU ${cpu(a).toFixed(1)} vs ${cpu(b).toFixed(1)} µs/op ` +
        `(${(cpu(a) / cpu(b)).toFixed(2)}×), ops/s ${(a.opsPerS / b.opsPerS).toFixed(2)}×`,
    );
  }
  return lines;
}

/**
 * consume_with_readers against consume_uniform of the same run: the Consume rate with the slow
 * StreamJournal readers open, as a ratio of the rate alone, and what the readers read.
 */
export function readersLine(
  byName: ReadonlyMap<ScenarioName, ScenarioFigures>,
  readers: { readers: number; pauseMs: number; entriesRead?: number; errors?: Record<string, number> },
): string {
  const withReaders = byName.get('consume_with_readers');
  const alone = byName.get('consume_uniform');
  const ratio = withReaders && alone && alone.opsPerS > 0 ? `${(withReaders.opsPerS / alone.opsPerS).toFixed(2)}×` : 'n/a (run consume_uniform too)';
  const failed = Object.entries(readers.errors ?? {}).map(([name, n]) => `${name}×${n}`);
  return (
    `Consume with ${readers.readers} slow StreamJournal readers open (half stopped after their first entry, half reading one entry ` +
    `every ${readers.pauseMs} ms${readers.entriesRead === undefined ? '' : `; ${readers.entriesRead} entries read`}` +
    `${failed.length > 0 ? `; streams failed: ${failed.join(' ')}` : ''}): ` +
    `${withReaders ? thousands(withReaders.opsPerS) : 'n/a'} ops/s against ${alone ? thousands(alone.opsPerS) : 'n/a'} alone = ${ratio} (target ≥ 0.80×).`
  );
}

/**
 * consume_poisoned against consume_uniform of the same run: what the batch fallback costs when
 * one command in `every` is rejected by PostgreSQL (issue 7 item 4), as the rate and the ledger
 * and PostgreSQL CPU per operation, and entries per transaction.
 */
export function poisonLine(byName: ReadonlyMap<ScenarioName, ScenarioFigures>, every: number): string | null {
  const poisoned = byName.get('consume_poisoned');
  const clean = byName.get('consume_uniform');
  if (!poisoned) return null;
  const cpu = (f: ScenarioFigures | undefined) =>
    f && f.serverCpuUsPerOp !== null && f.postgresCpuUsPerOp !== null ? f.serverCpuUsPerOp + f.postgresCpuUsPerOp : null;
  const [a, b] = [cpu(poisoned), cpu(clean)];
  return (
    `Batch fallback (1 Consume in ${every} rejected by PostgreSQL, so its batch is split until it fails alone): ` +
    `${thousands(poisoned.opsPerS)} ops/s against ${clean ? thousands(clean.opsPerS) : 'n/a'} without` +
    (clean && clean.opsPerS > 0 ? ` = ${(poisoned.opsPerS / clean.opsPerS).toFixed(2)}×` : '') +
    `; ledger + PostgreSQL CPU ${a === null ? 'n/a' : a.toFixed(1)} µs/op against ${b === null ? 'n/a' : b.toFixed(1)}` +
    (a !== null && b !== null && b > 0 ? ` = ${(a / b).toFixed(2)}×` : '') +
    (poisoned.entriesPerBatch != null ? `; ${poisoned.entriesPerBatch.toFixed(1)} entries per transaction` : '') +
    ` (no target: the figure the issue asks for).`
  );
}

export function stackReferenceLines(byName: ReadonlyMap<ScenarioName, ScenarioFigures>): string[] {
  const stack = byName.get('transport_stack');
  const bare = byName.get('transport');
  if (!stack || !stack.serverCpuUsPerOp) return [];
  const lines = [
    `Reference, not a target: the same no-op served by the ledger's own gRPC stack (transport_stack) costs ` +
      `${stack.serverCpuUsPerOp.toFixed(1)} µs of CPU per call` +
      (bare?.serverCpuUsPerOp ? ` (bare grpc-js: ${bare.serverCpuUsPerOp.toFixed(1)} µs)` : '') +
      ` and tops out at ${thousands(stack.opsPerS)} calls/s.`,
  ];
  for (const name of ['consume_uniform', 'consume_hot_user'] as const) {
    const f = byName.get(name);
    if (!f || f.serverCpuUsPerOp === null) continue;
    lines.push(
      `- ${name}: ${(f.opsPerS / stack.opsPerS).toFixed(2)}× its calls/s; ledger CPU per Consume ` +
        `${(f.serverCpuUsPerOp / stack.serverCpuUsPerOp).toFixed(2)}× its CPU per call ` +
        `(the ledger's own work: ${(f.serverCpuUsPerOp - stack.serverCpuUsPerOp).toFixed(1)} µs per Consume).`,
    );
  }
  return lines;
}

const round = (value: number | null, digits: number): number | null =>
  value === null || !Number.isFinite(value) ? null : Math.round(value * 10 ** digits) / 10 ** digits;

function scenarioJson(f: ScenarioFigures) {
  return {
    ops_per_s: round(f.opsPerS, 1),
    p50_ms: round(f.p50Ms, 3),
    p99_ms: round(f.p99Ms, 3),
    server_cpu_us_per_op: round(f.serverCpuUsPerOp, 2),
  };
}

function detailJson(f: ScenarioFigures) {
  return {
    ...scenarioJson(f),
    operation: f.operation,
    ops: f.ops,
    call_p50_ms: round(f.callP50Ms, 3),
    call_p99_ms: round(f.callP99Ms, 3),
    server_sys_cpu_us_per_op: round(f.serverSysCpuUsPerOp, 2),
    entries_per_batch: round(f.entriesPerBatch, 2),
    rounds_ops_per_s: f.roundsOpsPerS.map((x) => round(x, 1)),
    window_s: round(f.windowS, 3),
    client_cpu_us_per_op: round(f.clientCpuUsPerOp, 2),
    postgres_cpu_us_per_op: round(f.postgresCpuUsPerOp, 2),
    machine_busy_cores: round(f.machineBusyCores, 3),
    other_busy_cores: round(f.otherBusyCores, 3),
    errors: f.errors,
    first_error: f.firstError,
    call_limit_hit: f.callLimitHit,
  };
}

/**
 * The JSON the issue asks for: scenarios with four figures each, the two references and the
 * baseline ratio. Extra keys (the same-stack no-op, machine, config, targets, details) come
 * after them.
 */
export function resultJson(
  byName: ReadonlyMap<ScenarioName, ScenarioFigures>,
  extras: { machine: MachineInfo; config: Record<string, unknown>; targets: TargetCheck[] },
): Record<string, unknown> {
  const scenarios: Record<string, ReturnType<typeof scenarioJson>> = {};
  for (const name of ['consume_uniform', 'consume_hot_user', 'reserve_capture', 'get_balance'] as const) {
    const f = byName.get(name);
    if (f) scenarios[name] = scenarioJson(f);
  }
  const transport = byName.get('transport');
  const stack = byName.get('transport_stack');
  const baseline = byName.get('baseline');
  const hot = byName.get('consume_hot_user');
  return {
    scenarios,
    transport_ceiling_ops_per_s: transport ? round(transport.opsPerS, 1) : null,
    transport_server_cpu_us_per_op: transport ? round(transport.serverCpuUsPerOp, 2) : null,
    stack_noop_ops_per_s: stack ? round(stack.opsPerS, 1) : null,
    stack_noop_server_cpu_us_per_op: stack ? round(stack.serverCpuUsPerOp, 2) : null,
    baseline_ops_per_s: baseline ? round(baseline.opsPerS, 1) : null,
    baseline_ratio: hot && baseline && baseline.opsPerS > 0 ? round(hot.opsPerS / baseline.opsPerS, 3) : null,
    machine: extras.machine,
    config: extras.config,
    targets: extras.targets.map((t) => ({ name: t.name, measured: t.measured, required: t.required, result: t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL' })),
    details: Object.fromEntries([...byName].map(([name, f]) => [name, detailJson(f)])),
  };
}
