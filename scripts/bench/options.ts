import { parseArgs } from 'node:util';

/** The scenarios in the order the bench runs them. */
export const allScenarios = [
  'transport',
  'transport_stack',
  'consume_before_analyze',
  'consume_uniform',
  'consume_with_readers',
  'consume_poisoned',
  'consume_hot_user',
  'reserve_capture',
  'get_balance',
  'consume_spent_lots',
  'get_balance_spent_lots',
  'get_balance_as_of',
  'list_entries',
  'baseline',
] as const;
export type ScenarioName = (typeof allScenarios)[number];

/** The scenarios that do not drive the ledger: the two no-op servers and the plain-SQL baseline. */
const notLedger = ['transport', 'transport_stack', 'baseline'] as const;
export type LedgerScenario = Exclude<ScenarioName, (typeof notLedger)[number]>;
export const ledgerScenarios: readonly LedgerScenario[] = allScenarios.filter(
  (s): s is LedgerScenario => !(notLedger as readonly string[]).includes(s),
);

export interface BenchOptions {
  warmupMs: number;
  measureMs: number;
  clients: number;
  inFlightPerClient: number;
  users: number;
  maxCallsPerClient: number;
  callTimeoutMs: number;
  /** consume_with_readers: StreamJournal readers open, and the slow ones' pause per entry. */
  readers: number;
  readerPauseMs: number;
  scenarios: ScenarioName[];
  rounds: number;
  jsonPath: string | null;
  cpuProfDir: string | null;
  adminUrl: string;
  databaseName: string;
}

export const usage = `Usage: npm run bench -- [options]

  --warmup-s N        seconds of warm-up before each measure window (default 2)
  --measure-s N       seconds each scenario is measured (default 8)
  --clients N         client processes driving the load (default 2)
  --in-flight N       calls in flight per client process (default 32)
  --users N           users seeded for the uniform scenarios (default 10000)
  --max-calls N       calls a client process may start per scenario (default 2000000)
  --call-timeout-ms N deadline of each call (default 10000)
  --scenarios LIST    comma-separated subset of: ${allScenarios.join(', ')}
                      consume_before_analyze runs once, right after seeding and before the
                      bench's VACUUM ANALYZE (it is consume_uniform on stale statistics);
                      *_spent_lots drive one user who had 1,000 lots, all spent, and one live
                      lot (compare with consume_hot_user and get_balance); get_balance_as_of
                      asks a uniform user's balance as of now on the young journal;
                      list_entries reads a full page of 100 entries;
                      consume_with_readers is consume_uniform with --readers slow
                      StreamJournal readers open (compare with consume_uniform: the
                      target is ≥ 0.80× of it)
  --readers N         StreamJournal readers open during consume_with_readers (default 50;
                      the ledger refuses more than LEDGER_STREAMS_MAX, default 64)
  --reader-pause-ms N half the readers stop after their first entry, the others take one
                      entry every N ms (default 20)
  --rounds N          run the whole sequence N times and report each scenario's best round
                      (highest ops/s): on a shared machine, noise only ever slows a run
                      down (default 1)
  --json FILE         also write the results as JSON to FILE
  --cpu-prof DIR      run the ledger under --cpu-prof and write its profile to DIR
                      (the profiler costs CPU: figures of such a run are not comparable)
  --admin-url URL     PostgreSQL admin URL (default $BENCH_ADMIN_URL or
                      postgres://postgres@127.0.0.1:5432/postgres)
  --db-name NAME      name of the bench database (default ledger_bench; the baseline uses
                      NAME_baseline); both are dropped and re-created, then dropped at the end
`;

function positive(name: string, raw: string | undefined, fallback: number, max: number, integer = true): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name}: expected a ${integer ? 'whole ' : ''}number in (0, ${max}], got "${raw}"`);
  }
  return value;
}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'warmup-s': { type: 'string' },
      'measure-s': { type: 'string' },
      clients: { type: 'string' },
      'in-flight': { type: 'string' },
      users: { type: 'string' },
      'max-calls': { type: 'string' },
      'call-timeout-ms': { type: 'string' },
      readers: { type: 'string' },
      'reader-pause-ms': { type: 'string' },
      scenarios: { type: 'string' },
      rounds: { type: 'string' },
      json: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'admin-url': { type: 'string' },
      'db-name': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const scenarios = values.scenarios === undefined ? [...allScenarios] : values.scenarios.split(',').map((s) => s.trim());
  for (const s of scenarios) {
    if (!(allScenarios as readonly string[]).includes(s)) throw new Error(`--scenarios: unknown scenario "${s}"`);
  }
  const databaseName = values['db-name'] ?? 'ledger_bench';
  // The name is spliced into CREATE/DROP DATABASE, which take no parameters.
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(databaseName)) throw new Error('--db-name: lowercase letters, digits and _ only');
  return {
    // Windows are bounded so that a typo cannot start an hour-long run.
    warmupMs: positive('warmup-s', values['warmup-s'], 2, 60, false) * 1000,
    measureMs: positive('measure-s', values['measure-s'], 8, 120, false) * 1000,
    clients: positive('clients', values.clients, 2, 16),
    inFlightPerClient: positive('in-flight', values['in-flight'], 32, 1024),
    users: positive('users', values.users, 10_000, 99_999),
    maxCallsPerClient: positive('max-calls', values['max-calls'], 2_000_000, 100_000_000),
    callTimeoutMs: positive('call-timeout-ms', values['call-timeout-ms'], 10_000, 120_000),
    readers: positive('readers', values.readers, 50, 1_000),
    readerPauseMs: positive('reader-pause-ms', values['reader-pause-ms'], 20, 60_000),
    // Keep the run order fixed whatever order the flag lists them in.
    scenarios: allScenarios.filter((s) => scenarios.includes(s)),
    rounds: positive('rounds', values.rounds, 1, 5),
    jsonPath: values.json ?? null,
    cpuProfDir: values['cpu-prof'] ?? null,
    adminUrl: values['admin-url'] ?? process.env.BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    databaseName,
  };
}
