import { describe, expect, it } from 'vitest';
import type { ScenarioName } from './options.js';
import { readersLine, resultJson, stackReferenceLines, targetChecks, targetsTable, type ScenarioFigures } from './report.js';

function figures(name: ScenarioName, opsPerS: number, serverCpuUsPerOp: number | null, p99Ms = 20): ScenarioFigures {
  return {
    name,
    operation: name,
    ops: opsPerS * 8,
    opsPerS,
    p50Ms: 5,
    p99Ms,
    callP50Ms: null,
    callP99Ms: null,
    serverCpuUsPerOp,
    serverSysCpuUsPerOp: serverCpuUsPerOp === null ? null : 1,
    clientCpuUsPerOp: 90,
    postgresCpuUsPerOp: 40,
    machineBusyCores: 1.5,
    otherBusyCores: 0,
    windowS: 8,
    errors: {},
    firstError: null,
    callLimitHit: false,
    entriesPerBatch: null,
    roundsOpsPerS: [opsPerS],
  };
}

const run = new Map<ScenarioName, ScenarioFigures>([
  ['transport', figures('transport', 10_000, 40)],
  ['transport_stack', figures('transport_stack', 9_000, 50)],
  ['consume_uniform', figures('consume_uniform', 7_000, 60)],
  ['consume_hot_user', figures('consume_hot_user', 5_000, 100, 60)],
  ['baseline', figures('baseline', 1_000, null)],
]);

describe('bench report', () => {
  it('judges each target against the bare transport ceiling', () => {
    const checks = new Map(targetChecks(run).map((c) => [c.name, c]));
    expect(checks.get('uniform Consume ≥ 70% of transport ceiling')?.pass).toBe(true); // 0.70
    expect(checks.get('hot-user Consume ≥ 60% of transport ceiling')?.pass).toBe(false); // 0.50
    expect(checks.get('hot-user Consume ≥ 8× unbatched baseline (issue 7)')?.pass).toBe(false); // 5.00
    expect(checks.get('hot-user Consume ≥ 8× unbatched baseline (issue 7)')?.withdrawn).toBeUndefined();
    // Withdrawn by issue 7: still measured, marked, never judged in the table.
    expect(checks.get('uniform Consume ≥ 70% of transport ceiling')?.withdrawn).toBe(true);
    expect(targetsTable([...checks.values()])).toMatch(/transport ceiling \s*\| 7,000 \/ 10,000 = 0\.70× \s*\| ≥ 0\.70× \s*\| withdrawn/);
    expect(checks.get('ledger CPU per Consume (consume_uniform) ≤ 1.5× no-op server CPU per call')?.pass).toBe(true); // 1.50
    expect(checks.get('ledger CPU per Consume (consume_hot_user) ≤ 1.5× no-op server CPU per call')?.pass).toBe(false); // 2.50
    expect(checks.get('p99 < 50 ms (consume_hot_user)')?.pass).toBe(false);
    expect(checks.get('p99 < 50 ms (reserve_capture)')?.pass).toBeNull();
  });

  it('reports the same-stack no-op as a reference, with the ledger’s own work per Consume', () => {
    const lines = stackReferenceLines(run);
    expect(lines[0]).toContain('50.0 µs of CPU per call (bare grpc-js: 40.0 µs)');
    expect(lines[1]).toBe('- consume_uniform: 0.78× its calls/s; ledger CPU per Consume 1.20× its CPU per call (the ledger\'s own work: 10.0 µs per Consume).');
    expect(lines[2]).toContain('2.00× its CPU per call');
    expect(stackReferenceLines(new Map([...run].filter(([name]) => name !== 'transport_stack')))).toEqual([]);
  });

  it('writes the JSON keys the issue names, references included', () => {
    const json = resultJson(run, { machine: {} as never, config: {}, targets: [] });
    expect(json).toMatchObject({
      transport_ceiling_ops_per_s: 10_000,
      transport_server_cpu_us_per_op: 40,
      stack_noop_ops_per_s: 9_000,
      stack_noop_server_cpu_us_per_op: 50,
      baseline_ops_per_s: 1_000,
      baseline_ratio: 5,
    });
    expect(Object.keys(json.scenarios as object)).toEqual(['consume_uniform', 'consume_hot_user']);
  });
  it('compares Consume with slow StreamJournal readers open against Consume alone (target ≥ 0.80×)', () => {
    const check = (withReaders: number) =>
      targetChecks(new Map([...run, ['consume_with_readers', figures('consume_with_readers', withReaders, 70)]])).find((c) =>
        c.name.startsWith('Consume with slow StreamJournal readers'),
      );
    expect(check(5_600)).toMatchObject({ measured: '5,600 / 7,000 = 0.80×', pass: true });
    expect(check(5_500)?.pass).toBe(false);
    expect(targetChecks(run).find((c) => c.name.startsWith('Consume with slow StreamJournal readers'))?.pass).toBeNull();
    const line = readersLine(new Map([...run, ['consume_with_readers', figures('consume_with_readers', 6_300, 70)]]), {
      readers: 50,
      pauseMs: 20,
      entriesRead: 1_234,
      errors: {},
    });
    expect(line).toContain('6,300 ops/s against 7,000 alone = 0.90× (target ≥ 0.80×)');
    expect(line).toContain('50 slow StreamJournal readers');
  });
});
