// Offline validation of everything under deploy/: each Kubernetes object against its OpenAPI
// schema (kubernetes-models, @kubernetes-models/keda, @kubernetes-models/prometheus-operator:
// maintained packages that ship the schemas as precompiled validators), the compose file against
// the Compose Specification's JSON schema (the copy dclint ships, with ajv), the alert rules and
// the Grafana dashboard structurally, and their consistency with the code: every environment
// variable a manifest sets is one its service reads, every command runs a file that exists,
// every metric a panel or a rule uses is one a service registers.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const deployDir = path.join(root, 'deploy');
const ourImage = /^credit-ledger(:|$)/;

/** Parsed YAML and JSON: objects of unknown shape, checked field by field as we go. */
type Obj = Record<string, any>;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(entry.name) ? [full] : [];
  });
}

/** Every document of a YAML file, failing on any syntax error (anchors and merge keys resolved). */
function parseYaml(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8'), { merge: true })
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${path.relative(root, file)}: ${doc.errors[0]!.message}`);
      return doc.toJS() as Obj | null;
    })
    .filter((doc): doc is Obj => doc !== null);
}

const files = yamlFiles(deployDir);
const composeFile = path.join(deployDir, 'compose.yaml');
const kubeObjects = files
  .filter((f) => f !== composeFile)
  .flatMap((file) => parseYaml(file).map((object) => ({ file: path.relative(root, file), object })));

// --- Kubernetes schemas ---------------------------------------------------------------------

/** The module of kubernetes-models (or its CRD companions) holding one apiVersion's kinds. */
function modelModule(apiVersion: string): string {
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  if (group === 'keda.sh') return `@kubernetes-models/keda/${apiVersion}`;
  if (group === 'monitoring.coreos.com') return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  return `kubernetes-models/${apiVersion}`;
}

/** Validates one object against its kind's schema; returns the problem, or null. */
async function schemaProblem(object: Obj): Promise<string | null> {
  if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string') return 'no apiVersion/kind';
  let kinds: Obj;
  try {
    kinds = (await import(modelModule(object.apiVersion))) as Obj;
  } catch {
    return `no schema package for apiVersion ${object.apiVersion}`;
  }
  const Model = kinds[object.kind] as (new (data: Obj) => { validate(): void }) | undefined;
  if (!Model) return `no schema for ${object.apiVersion} ${object.kind}`;
  try {
    new Model(object).validate();
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

// --- what the code reads and registers -----------------------------------------------------

const read = (relative: string): string => readFileSync(path.join(root, relative), 'utf8');
const workerMerged = existsSync(path.join(root, 'services/worker/config.ts'));

/**
 * The worker and the Wavespeed simulator are built on another branch (issue 10). Until they are
 * merged here, their configuration variables, entry points and metric names come from this list,
 * copied from that branch's services/worker/config.ts, metrics.ts and
 * services/wavespeed-simulator/main.ts. Once services/worker/ exists, the real files are used and
 * this list is ignored.
 */
const workerBranch = {
  files: ['services/worker/main.ts', 'services/wavespeed-simulator/main.ts'],
  workerEnv: [
    'REDIS_URL', 'LEDGER_ADDR', 'LEDGER_TOKEN', 'WAVESPEED_API_KEY', 'WAVESPEED_BASE_URL', 'WORKER_CONCURRENCY',
    'WAVESPEED_RATE_PER_MIN', 'MODELS_FILE', 'WORKER_METRICS_ADDR', 'WORKER_QUEUE_PREFIX', 'WORKER_HOLD_TTL_MS',
    'WORKER_LOCK_MS', 'WORKER_STALLED_INTERVAL_MS', 'WORKER_DRAIN_GRACE_MS', 'WAVESPEED_POLL_INITIAL_MS',
    'WAVESPEED_POLL_INTERVAL_MS', 'WAVESPEED_POLL_MAX_MS', 'WAVESPEED_SUBMIT_TIMEOUT_MS', 'WAVESPEED_READ_TIMEOUT_MS',
    'WAVESPEED_PREDICTION_TIMEOUT_MS', 'WORKER_LEDGER_RETRY_MS',
  ],
  simulatorEnv: [
    'WAVESPEED_SIM_ADDR', 'WAVESPEED_API_KEY', 'WAVESPEED_WEBHOOK_SECRET', 'WAVESPEED_SIM_LATENCY_MS',
    'WAVESPEED_SIM_RATE_PER_MIN', 'WAVESPEED_SIM_BALANCE_MICROS',
  ],
  metrics: [
    'enhancement_jobs_total', 'enhancement_upstream_latency_seconds', 'enhancement_wavespeed_requests_total',
    'enhancement_ledger_calls_total', 'enhancement_holds_extended_total', 'enhancement_unknown_submit_outcomes_total',
    'enhancement_uncharged_results_total',
  ],
};

/**
 * Metrics that no service of this repository registers, with who provides them. The audit job
 * does not exist yet: the alert rules name what it is to push (deploy/prometheus/alerts.yaml).
 */
const externalMetrics: Record<string, string> = {
  keda_scaler_metrics_value: 'the KEDA operator (the wait list length it scales the worker on)',
  ledger_audit_verify_failures: 'the audit job, to be built (pushes after each journal verification)',
  ledger_audit_last_run_timestamp_seconds: 'the audit job, to be built',
};

/** Environment every process of the image may be given besides its own configuration. */
const runtimeEnv = new Set(['NODE_OPTIONS', 'NODE_ENV', 'LOG_LEVEL']);

/** What each entry point reads from the environment: the variable names in its config source. */
function envReadBy(entry: string): { names: Set<string> | null; source: string } {
  const sources: Record<string, string[]> = {
    'services/ledger/main.ts': ['services/ledger/config.ts'],
    // Both reach the ledger through its client, which reads the client TLS variables.
    'services/payments/main.ts': ['services/payments/config.ts', 'services/ledger/client/ledger-client.ts'],
    'services/worker/main.ts': ['services/worker/config.ts', 'services/ledger/client/ledger-client.ts'],
    'services/wavespeed-simulator/main.ts': ['services/wavespeed-simulator/main.ts'],
    'scripts/db-migrate.ts': ['scripts/db-migrate.ts'],
    'services/ledger/db-roles.ts': ['services/ledger/db-roles.ts'],
  };
  const files = sources[entry];
  if (!files) return { names: null, source: `no known configuration for ${entry}` };
  if (!workerMerged && entry === 'services/worker/main.ts') return { names: new Set(workerBranch.workerEnv), source: 'workerBranch list' };
  if (!workerMerged && entry === 'services/wavespeed-simulator/main.ts') return { names: new Set(workerBranch.simulatorEnv), source: 'workerBranch list' };
  const text = files.map(read).join('\n');
  return { names: new Set(text.match(/\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b/g) ?? []), source: files.join(', ') };
}

/** `node services/x/main.js` (compiled in the image) → its TypeScript source in the repository. */
function entryOf(command: unknown): string | null {
  if (!Array.isArray(command) || command[0] !== 'node' || typeof command[1] !== 'string') return null;
  return command[1].replace(/\.js$/, '.ts');
}

function entryExists(entry: string): boolean {
  if (existsSync(path.join(root, entry))) return true;
  return !workerMerged && workerBranch.files.includes(entry);
}

/** The problems with one container of our image: its command and the variables set for it. */
function containerProblems(where: string, command: unknown, envNames: string[]): string[] {
  const entry = entryOf(command);
  if (!entry) return [`${where}: command ${JSON.stringify(command)} is not \`node <file>.js\``];
  if (!entryExists(entry)) return [`${where}: ${entry} does not exist`];
  const { names, source } = envReadBy(entry);
  if (!names) return [`${where}: ${source}`];
  return envNames
    .filter((name) => !runtimeEnv.has(name) && !names.has(name))
    .map((name) => `${where}: ${name} is not read by ${entry} (${source})`);
}

const serviceSources = (() => {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'generated') walk(full);
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        out.push(readFileSync(full, 'utf8'));
      }
    }
  };
  walk(path.join(root, 'services'));
  return out.join('\n');
})();

/** Whether a metric (or the histogram/summary it is a series of) is registered by name. */
function metricProblem(metric: string): string | null {
  const base = metric.replace(/_(bucket|sum|count)$/, '');
  for (const name of new Set([metric, base])) {
    if (serviceSources.includes(`name: '${name}'`)) return null;
    if (!workerMerged && workerBranch.metrics.includes(name)) return null;
    if (name in externalMetrics) return null;
  }
  return `${metric}: registered by no service (grep "name: '${base}'" in services/)`;
}

const promqlWords = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'topk', 'bottomk', 'quantile', 'by', 'without', 'on', 'ignoring',
  'group_left', 'group_right', 'and', 'or', 'unless', 'rate', 'irate', 'increase', 'delta', 'deriv', 'abs', 'absent',
  'absent_over_time', 'histogram_quantile', 'time', 'clamp_min', 'clamp_max', 'max_over_time', 'min_over_time',
  'avg_over_time', 'label_replace', 'vector', 'scalar', 'offset', 'bool', 'round', 'ceil', 'floor',
]);

/** Metric names in a PromQL expression: label matchers, grouping labels and ranges removed. */
function metricsIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...new Set(stripped.match(/\b[a-zA-Z_:][a-zA-Z0-9_:]*\b/g) ?? [])].filter(
    (word) => !promqlWords.has(word) && !/^\d/.test(word) && !/^(e|Inf|NaN)$/.test(word),
  );
}

// --- the checks over the files -------------------------------------------------------------

/** Consistency of the Kubernetes objects with each other and with the code. */
function kubeProblems(objects: { file: string; object: Obj }[]): string[] {
  const problems: string[] = [];
  const workloads = objects.filter(({ object }) => object.kind === 'Deployment' || object.kind === 'Job');
  const deployments = objects.filter(({ object }) => object.kind === 'Deployment');
  const matches = (selector: Obj | undefined, labels: Obj | undefined) =>
    !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

  for (const { file, object } of objects) {
    const where = `${file} ${object.kind}/${object.metadata?.name}`;
    if (object.kind === 'Secret') problems.push(`${where}: Secrets are referenced, never committed`);
    if (object.kind === 'Service') {
      const target = deployments.find(({ object: d }) => matches(object.spec?.selector, d.spec?.template?.metadata?.labels));
      if (!target) problems.push(`${where}: selects no Deployment`);
      const portNames = new Set<string>(
        (target?.object.spec.template.spec.containers ?? []).flatMap((c: Obj) => (c.ports ?? []).map((p: Obj) => p.name)),
      );
      for (const port of object.spec?.ports ?? []) {
        if (typeof port.targetPort === 'string' && !portNames.has(port.targetPort)) problems.push(`${where}: targetPort ${port.targetPort} is no container port`);
      }
    }
    if (object.kind === 'PodDisruptionBudget' && !deployments.some(({ object: d }) => matches(object.spec?.selector?.matchLabels, d.spec?.template?.metadata?.labels))) {
      problems.push(`${where}: covers no Deployment`);
    }
    if (object.kind === 'ScaledObject' && !deployments.some(({ object: d }) => d.metadata?.name === object.spec?.scaleTargetRef?.name)) {
      problems.push(`${where}: scales no Deployment of ours`);
    }
  }

  for (const { file, object } of workloads) {
    const pod = object.spec?.template ?? {};
    if (object.kind === 'Deployment' && !matches(object.spec?.selector?.matchLabels, pod.metadata?.labels)) {
      problems.push(`${file} ${object.metadata?.name}: selector does not match the pod labels`);
    }
    const containers: Obj[] = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
    const secretVolumes = new Set(((pod.spec?.volumes ?? []) as Obj[]).filter((v) => v.secret).map((v) => v.name as string));
    for (const c of containers) {
      const where = `${file} ${object.kind}/${object.metadata?.name} container ${c.name}`;
      if (!c.resources?.requests || !c.resources?.limits?.memory) problems.push(`${where}: needs resource requests and a memory limit`);
      // Files of a Secret mounted read-only: a variable naming one holds a path, not the secret.
      const secretDirs = ((c.volumeMounts ?? []) as Obj[])
        .filter((m) => secretVolumes.has(m.name) && m.readOnly === true)
        .map((m) => `${String(m.mountPath).replace(/\/$/, '')}/`);
      const inSecret = (value: unknown) => typeof value === 'string' && secretDirs.some((d) => value.startsWith(d));
      for (const e of c.env ?? []) {
        if (e.value !== undefined && /(SECRET|TOKEN|PASSWORD|CREDENTIALS|_KEY$|DATABASE_URL|REDIS_URL)/.test(e.name) && !inSecret(e.value)) {
          problems.push(`${where}: ${e.name} must come from a Secret (valueFrom.secretKeyRef or a file of a mounted Secret), not inline`);
        }
        if (/^LEDGER_TLS_/.test(e.name) && !inSecret(e.value)) {
          problems.push(`${where}: ${e.name} must name a file of a Secret mounted read-only, not ${JSON.stringify(e.value)}`);
        }
      }
      if (!ourImage.test(c.image)) continue;
      if (c.envFrom) problems.push(`${where}: use env with secretKeyRef (names checked), not envFrom`);
      problems.push(...containerProblems(where, c.command, (c.env ?? []).map((e: Obj) => e.name as string)));
      const portNumbers = new Set((c.ports ?? []).map((p: Obj) => p.containerPort));
      const portNames = new Set((c.ports ?? []).map((p: Obj) => p.name));
      for (const e of c.env ?? []) {
        const listen = /^0\.0\.0\.0:(\d+)$/.exec(e.value ?? '');
        if (listen && !portNumbers.has(Number(listen[1]))) problems.push(`${where}: ${e.name} listens on ${listen[1]}, not a declared containerPort`);
      }
      if (object.kind === 'Deployment') {
        for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
          const p = c[probe] as Obj | undefined;
          if (!p) {
            problems.push(`${where}: no ${probe}`);
            continue;
          }
          const port = p.grpc?.port ?? p.httpGet?.port ?? p.tcpSocket?.port;
          if (!(portNumbers.has(port) || portNames.has(port))) problems.push(`${where}: ${probe} port ${port} is not a container port`);
        }
      }
    }
  }
  return problems;
}

/** Consistency of the compose file with the image's entry points and the env templates. */
function composeProblems(compose: Obj): string[] {
  const problems: string[] = [];
  const services = (compose.services ?? {}) as Obj;
  for (const [name, service] of Object.entries(services) as [string, Obj][]) {
    const where = `compose service ${name}`;
    for (const dependency of Object.keys(service.depends_on ?? {})) {
      if (!(dependency in services)) problems.push(`${where}: depends on unknown service ${dependency}`);
    }
    const envFiles: string[] = [service.env_file ?? []].flat();
    const envNames = Object.keys(service.environment ?? {});
    for (const envFile of envFiles) {
      const template = path.join(deployDir, `${envFile}.example`);
      if (!existsSync(template)) {
        problems.push(`${where}: ${envFile} has no template ${path.relative(root, template)}`);
        continue;
      }
      envNames.push(...[...readFileSync(template, 'utf8').matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
    }
    const oneShot = service.restart === 'no';
    if (!oneShot && !service.healthcheck) problems.push(`${where}: a long-running service needs a healthcheck`);
    if (!ourImage.test(service.image ?? '')) continue;
    if (oneShot && service.command?.[0] === 'sh') continue; // db-setup: a shell chaining entry points, checked below
    problems.push(...containerProblems(where, service.command, envNames));
  }
  return problems;
}

function composeValidator() {
  // The Compose Specification's own schema as dclint ships it (draft-07; its `$schema` URL is not
  // one ajv registers, and its custom formats such as `duration` are compose-go's, not JSON
  // Schema's, so formats are not checked).
  const { $schema: _ignored, ...schema } = JSON.parse(read('node_modules/dclint/schemas/compose.schema.json')) as Obj;
  const ajv = new Ajv({ strict: false, allErrors: true, allowUnionTypes: true, validateFormats: false });
  return ajv.compile(schema);
}

function alertProblems(rule: Obj): string[] {
  const problems: string[] = [];
  const groups = (rule.spec?.groups ?? []) as Obj[];
  if (groups.length === 0) problems.push('no rule groups');
  const seen = new Set<string>();
  for (const group of groups) {
    for (const r of (group.rules ?? []) as Obj[]) {
      const where = `${group.name}/${r.alert ?? r.record}`;
      if (!r.alert) problems.push(`${where}: not an alert`);
      if (seen.has(r.alert)) problems.push(`${where}: duplicate alert name`);
      seen.add(r.alert);
      if (typeof r.expr !== 'string' || r.expr.trim() === '') problems.push(`${where}: no expr`);
      if (typeof r.for !== 'string' || !/^\d+[smhd]$/.test(r.for)) problems.push(`${where}: for must be a duration`);
      if (!['critical', 'warning', 'info'].includes(r.labels?.severity)) problems.push(`${where}: labels.severity must be critical, warning or info`);
      if (!r.annotations?.summary) problems.push(`${where}: no annotations.summary`);
      for (const metric of metricsIn(String(r.expr ?? ''))) {
        const problem = metricProblem(metric);
        if (problem) problems.push(`${where}: ${problem}`);
      }
    }
  }
  return problems;
}

function dashboardProblems(dashboard: Obj): string[] {
  const problems: string[] = [];
  if (!dashboard.title || !dashboard.uid) problems.push('dashboard: needs a title and a uid');
  const panels = (dashboard.panels ?? []) as Obj[];
  if (panels.filter((p) => p.type !== 'row').length === 0) problems.push('dashboard: no panels');
  const ids = new Set<number>();
  for (const panel of panels) {
    const where = `panel ${panel.id} "${panel.title}"`;
    if (ids.has(panel.id)) problems.push(`${where}: duplicate id`);
    ids.add(panel.id);
    if (!panel.gridPos) problems.push(`${where}: no gridPos`);
    if (panel.type === 'row') continue;
    const targets = (panel.targets ?? []) as Obj[];
    if (targets.length === 0) problems.push(`${where}: no targets`);
    for (const target of targets) {
      if (typeof target.expr !== 'string' || target.expr.trim() === '') {
        problems.push(`${where}: target ${target.refId} has no expr`);
        continue;
      }
      for (const metric of metricsIn(target.expr)) {
        const problem = metricProblem(metric);
        if (problem) problems.push(`${where}: ${problem}`);
      }
    }
  }
  return problems;
}

// --- tests ---------------------------------------------------------------------------------

describe('deploy/ manifests', () => {
  it('finds the files it is meant to check', () => {
    const relative = files.map((f) => path.relative(root, f));
    expect(relative).toEqual(expect.arrayContaining(['deploy/compose.yaml', 'deploy/prometheus/alerts.yaml']));
    expect(relative.filter((f) => f.startsWith('deploy/k8s/')).length).toBeGreaterThanOrEqual(4);
    const kinds = kubeObjects.map(({ object }) => object.kind);
    for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy', 'Job', 'ScaledObject', 'PrometheusRule']) {
      expect(kinds, kind).toContain(kind);
    }
  });

  it('every Kubernetes object validates against its schema', async () => {
    const problems: string[] = [];
    for (const { file, object } of kubeObjects) {
      const problem = await schemaProblem(object);
      if (problem) problems.push(`${file} ${object.kind}/${object.metadata?.name}: ${problem}`);
    }
    expect(problems).toEqual([]);
  });

  it('a broken object fails schema validation (the validator is not vacuous)', async () => {
    const ledger = kubeObjects.find(({ object }) => object.kind === 'Deployment' && object.metadata?.name === 'ledger')!.object;
    const broken = structuredClone(ledger);
    broken.spec.replicas = 'two';
    broken.spec.template.spec.containers[0].readinessProbe = { grpc: { port: 'grpc' } };
    expect(await schemaProblem(broken)).toMatch(/replicas must be integer|port must be integer/);
    const scaled = structuredClone(kubeObjects.find(({ object }) => object.kind === 'ScaledObject')!.object);
    delete scaled.spec.scaleTargetRef;
    expect(await schemaProblem(scaled)).toMatch(/scaleTargetRef/);
    expect(await schemaProblem({ apiVersion: 'apps/v1', kind: 'Deploymnet', metadata: { name: 'x' } })).toMatch(/no schema/);
  });

  it('the Kubernetes objects agree with each other and with the code', () => {
    expect(kubeProblems(kubeObjects)).toEqual([]);
  });

  it('the ledger serves TLS with client certificates, probed over plain HTTP; payments and the worker present certificates', () => {
    const deployment = (name: string) =>
      kubeObjects.find(({ object }) => object.kind === 'Deployment' && object.metadata?.name === name)!.object.spec.template.spec.containers[0] as Obj;
    const env = (c: Obj) => new Map(((c.env ?? []) as Obj[]).map((e) => [e.name as string, e.value as string | undefined]));
    const ledger = deployment('ledger');
    expect([...env(ledger).keys()].filter((n) => n.startsWith('LEDGER_TLS_')).sort()).toEqual(['LEDGER_TLS_CERT', 'LEDGER_TLS_CLIENT_CA', 'LEDGER_TLS_KEY']);
    // The kubelet's gRPC probe cannot speak TLS: the probes ask /readyz on the metrics port.
    for (const probe of ['startupProbe', 'readinessProbe'] as const) {
      expect(ledger[probe]).toMatchObject({ httpGet: { path: '/readyz', port: 'metrics' } });
    }
    for (const name of ['payments', 'worker']) {
      expect([...env(deployment(name)).keys()].filter((n) => n.startsWith('LEDGER_TLS_')).sort()).toEqual([
        'LEDGER_TLS_CA', 'LEDGER_TLS_CLIENT_CERT', 'LEDGER_TLS_CLIENT_KEY',
      ]);
    }
    // And the check holds them to it: a key file outside a mounted Secret is a problem.
    const objects = structuredClone(kubeObjects);
    const c = objects.find(({ object }) => object.kind === 'Deployment' && object.metadata?.name === 'ledger')!.object.spec.template.spec.containers[0];
    c.env.find((e: Obj) => e.name === 'LEDGER_TLS_KEY').value = '/tmp/tls.key';
    expect(kubeProblems(objects).join('\n')).toContain('LEDGER_TLS_KEY must name a file of a Secret mounted read-only');
  });

  it('the consistency check catches an unknown variable, a missing file, a bad probe and an inline secret', () => {
    const objects = structuredClone(kubeObjects);
    const ledger = objects.find(({ object }) => object.kind === 'Deployment' && object.metadata?.name === 'ledger')!.object;
    const container = ledger.spec.template.spec.containers[0];
    container.env.push({ name: 'LEDGER_GRPC_ADRR', value: '0.0.0.0:50051' }, { name: 'STRIPE_SECRET_KEY', value: 'sk_live_x' });
    container.readinessProbe = { grpc: { port: 50052 } };
    const migrate = objects.find(({ object }) => object.metadata?.name === 'credit-ledger-migrate')!.object;
    migrate.spec.template.spec.containers[0].command = ['node', 'scripts/db-migrat.js'];
    const problems = kubeProblems(objects).join('\n');
    expect(problems).toContain('LEDGER_GRPC_ADRR is not read by services/ledger/main.ts');
    expect(problems).toContain('STRIPE_SECRET_KEY must come from a Secret');
    expect(problems).toContain('readinessProbe port 50052 is not a container port');
    expect(problems).toContain('scripts/db-migrat.ts does not exist');
  });

  it('the compose file validates against the Compose Specification and agrees with the code', () => {
    const [compose] = parseYaml(composeFile);
    const validate = composeValidator();
    const valid = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors)).toEqual([]);
    expect(valid).toBe(true);
    expect(composeProblems(compose!)).toEqual([]);
    // The database setup's shell chains two entry points of the image.
    const setup = (compose!.services as Obj)['db-setup'] as Obj;
    for (const file of String(setup.command.at(-1)).match(/\b[\w/-]+\.js\b/g) ?? []) {
      expect(existsSync(path.join(root, file.replace(/\.js$/, '.ts'))), file).toBe(true);
    }
  });

  it('a broken compose file fails (schema and consistency)', () => {
    const [compose] = parseYaml(composeFile);
    const validate = composeValidator();
    const broken = structuredClone(compose!);
    broken.services.ledger.healthcheck.intervall = '5s';
    broken.services.payments.depends_on.ledger.condition = 'service_ready';
    expect(validate(broken)).toBe(false);
    const inconsistent = structuredClone(compose!);
    inconsistent.services.payments.environment.PAYMENTS_HTTP_ADR = '0.0.0.0:8080';
    inconsistent.services.worker.depends_on.redis_ = { condition: 'service_healthy' };
    const problems = composeProblems(inconsistent).join('\n');
    expect(problems).toContain('PAYMENTS_HTTP_ADR is not read by services/payments/main.ts');
    expect(problems).toContain('depends on unknown service redis_');
  });

  it('every alert rule has expr, for, a severity and a summary, over metrics the services register', () => {
    const rules = kubeObjects.filter(({ object }) => object.kind === 'PrometheusRule');
    expect(rules.length).toBe(1);
    expect(alertProblems(rules[0]!.object)).toEqual([]);
    const alerts = (rules[0]!.object.spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]).map((r) => r.alert);
    for (const alert of ['PaymentsWebhookInboxLag', 'PaymentsEventsParked', 'LedgerLapsedHoldsNotSwept', 'WorkerHoldTimeouts', 'LedgerAuditVerifyFailed', 'LedgerNotServing', 'LedgerClockSkew']) {
      expect(alerts).toContain(alert);
    }
  });

  it('a broken alert rule fails', () => {
    const rule = structuredClone(kubeObjects.find(({ object }) => object.kind === 'PrometheusRule')!.object);
    const first = rule.spec.groups[0].rules[0];
    delete first.for;
    first.labels = {};
    first.expr = 'ledger_serveing == 0';
    const problems = alertProblems(rule).join('\n');
    expect(problems).toContain('for must be a duration');
    expect(problems).toContain('labels.severity');
    expect(problems).toContain('ledger_serveing: registered by no service');
  });

  it('the Grafana dashboard has panels with targets over metrics the services register', () => {
    const dashboard = JSON.parse(read('deploy/grafana/credit-ledger.json')) as Obj;
    expect(dashboardProblems(dashboard)).toEqual([]);
    const exprs = (dashboard.panels as Obj[]).flatMap((p) => (p.targets ?? []) as Obj[]).map((t) => String(t.expr));
    for (const metric of ['ledger_grpc_calls_total', 'ledger_batch_commands_bucket', 'ledger_batch_seconds_bucket', 'ledger_holds_open', 'payments_inbox_lag_seconds', 'payments_inbox_parked', 'enhancement_jobs_total', 'enhancement_upstream_latency_seconds_bucket']) {
      expect(exprs.some((e) => e.includes(metric)), metric).toBe(true);
    }
    const broken = structuredClone(dashboard);
    broken.panels[1].targets = [];
    broken.panels[2].targets[0].expr = 'rate(ledger_grpc_call_total[5m])';
    const problems = dashboardProblems(broken).join('\n');
    expect(problems).toContain('no targets');
    expect(problems).toContain('ledger_grpc_call_total: registered by no service');
  });

  it('the SQL in the ConfigMap is deploy/sql/payments-role.sql', () => {
    const configMap = kubeObjects.find(({ object }) => object.kind === 'ConfigMap' && object.metadata?.name === 'credit-ledger-sql')!.object;
    expect(configMap.data['payments-role.sql']).toBe(read('deploy/sql/payments-role.sql'));
  });

  it('extracts metric names from PromQL', () => {
    expect(metricsIn('histogram_quantile(0.99, sum by (le, method) (rate(ledger_grpc_call_seconds_bucket{code="OK"}[5m])))')).toEqual(['ledger_grpc_call_seconds_bucket']);
    expect(metricsIn('sum(ledger_serving) == 0 or absent(ledger_serving)')).toEqual(['ledger_serving']);
    expect(metricsIn('time() - max(ledger_audit_last_run_timestamp_seconds) > 26 * 3600')).toEqual(['ledger_audit_last_run_timestamp_seconds']);
  });
});
