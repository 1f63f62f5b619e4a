import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownTable } from './report.js';

/**
 * Reads the V8 CPU profile that `node --cpu-prof` wrote for the ledger and says where its CPU
 * went during each scenario's measure window: self time by area (a package, a Node internal
 * module or a source file of this repo) and by function. V8 stamps samples with the monotonic
 * clock, the same one as process.hrtime, so the bench's windows select the samples directly.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileWindow {
  name: string;
  /** Operations completed in the window, to express time per operation. */
  ops: number;
  /** Monotonic clock, microseconds (process.hrtime.bigint() / 1000). */
  startUs: number;
  endUs: number;
}

/** This repository's root as it appears in profile URLs, to shorten them. */
const repoMarker = `${path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')}/`;

function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') {
    // V8's pseudo-frames: GC, native code outside JS ("(program)"), idle.
    return functionName.startsWith('(') ? functionName : '(native)';
  }
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = url.slice(modules + '/node_modules/'.length).split('/');
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? url);
  }
  if (url.startsWith('node:')) {
    const parts = url.split('/');
    return parts.slice(0, Math.min(parts.length, 2)).join('/');
  }
  const local = url.indexOf(repoMarker);
  if (local >= 0) return url.slice(local + repoMarker.length);
  return url.replace(/^file:\/\//, '');
}

function functionLabel(frame: CallFrame): string {
  const name = frame.functionName || '(anonymous)';
  if (frame.url === '') return name;
  return `${name} ${area(frame)}:${frame.lineNumber + 1}`;
}

/** Code that only runs on behalf of its caller: native frames and Node's own modules. */
const isBorrowed = (frame: CallFrame): boolean => frame.url === '' || frame.url.startsWith('node:');

/**
 * Who a sample's time is charged to: the nearest frame, from the sample up, that belongs to a
 * package or to this repository. A socket write under an HTTP/2 response is then charged to
 * @grpc/grpc-js, under a query to pg; this answers "which part of the ledger costs what"
 * better than self time, which lumps every write together as native code. V8's own
 * pseudo-frames (GC, "(program)") keep their names.
 */
function owners(profile: CpuProfile): Map<number, string> {
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const owner = new Map<number, string>();
  for (const node of profile.nodes) {
    const frame = node.callFrame;
    if (frame.url === '' && frame.functionName.startsWith('(')) {
      owner.set(node.id, frame.functionName);
      continue;
    }
    let id: number | undefined = node.id;
    let found: string | null = null;
    while (id !== undefined) {
      const current = byId.get(id);
      if (!current) break;
      if (!isBorrowed(current.callFrame)) {
        found = area(current.callFrame);
        break;
      }
      id = parent.get(id);
    }
    owner.set(node.id, found ?? (frame.url === '' ? '(native, no JS caller)' : area(frame)));
  }
  return owner;
}

/** Native socket writes: see the note printed with the summary. */
const socketWrites = new Set(['writev', 'writeBuffer']);

interface Tally {
  /** Sampled time on the JS thread, idle excluded, socket writes included. */
  totalUs: number;
  idleUs: number;
  writesUs: number;
  /** Everything but idle and socket writes, by who is charged with it. */
  byOwner: Map<string, number>;
  /** Self time by function, socket writes included. */
  byFunction: Map<string, number>;
}

function tally(profile: CpuProfile, window: ProfileWindow): Tally {
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const ownerOf = owners(profile);
  const result: Tally = { totalUs: 0, idleUs: 0, writesUs: 0, byOwner: new Map(), byFunction: new Map() };
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    at += profile.timeDeltas[i] ?? 0;
    if (at < window.startUs || at >= window.endUs) continue;
    // A sample stands for the time until the next one.
    const weight = profile.timeDeltas[i + 1] ?? 0;
    const nodeId = profile.samples[i] ?? -1;
    const frame = frames.get(nodeId);
    if (!frame) continue;
    if (frame.functionName === '(idle)') {
      result.idleUs += weight;
      continue;
    }
    result.totalUs += weight;
    const f = functionLabel(frame);
    result.byFunction.set(f, (result.byFunction.get(f) ?? 0) + weight);
    if (frame.url === '' && socketWrites.has(frame.functionName)) {
      result.writesUs += weight;
      continue;
    }
    const o = ownerOf.get(nodeId) ?? area(frame);
    result.byOwner.set(o, (result.byOwner.get(o) ?? 0) + weight);
  }
  return result;
}

function top(map: Map<string, number>, ops: number, count: number): string[][] {
  const total = [...map.values()].reduce((sum, us) => sum + us, 0);
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => [
      name,
      (us / 1000).toFixed(0),
      ops > 0 ? (us / ops).toFixed(1) : 'n/a',
      `${((100 * us) / total).toFixed(1)}%`,
    ]);
}

/**
 * The ledger's main-thread profile. Node names them CPU.<date>.<time>.<pid>.<thread>.<n>; under
 * tsx there is a second one for the module loader's thread, which is idle while serving.
 */
async function mainThreadProfile(dir: string, pid: number): Promise<string | null> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.cpuprofile') && n.includes(`.${pid}.`));
  const main = names.find((n) => n.includes(`.${pid}.0.`));
  if (main) return path.join(dir, main);
  // No thread 0 in the name: take the largest of the process's profiles.
  let largest: { file: string; size: number } | null = null;
  for (const name of names) {
    const file = path.join(dir, name);
    const { size } = await stat(file);
    if (!largest || size > largest.size) largest = { file, size };
  }
  return largest?.file ?? null;
}

/** A markdown summary per window, or a line saying why there is none. */
export async function summariseProfiles(dir: string, pid: number, windows: readonly ProfileWindow[]): Promise<string> {
  const file = await mainThreadProfile(dir, pid).catch(() => null);
  if (!file) return `No .cpuprofile of process ${pid} in ${dir}: did the ledger exit by itself?`;
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const out: string[] = [`Profile: ${file}`];
  out.push(
    '',
    'The profiler samples wall time on the JS thread. A socket write wakes its peer (a PostgreSQL backend, a ' +
      'client), which on a busy machine may take the CPU from the writer, so samples in native socket writes ' +
      '(writev, writeBuffer) are mostly waiting: they are left out of the "charged to" table, whose µs/op is then ' +
      'close to user CPU per op (compare with the table above: total minus sys).',
  );
  for (const window of windows) {
    const t = tally(profile, window);
    if (t.totalUs === 0) {
      out.push('', `#### ${window.name}: no samples in the window`);
      continue;
    }
    const seconds = (window.endUs - window.startUs) / 1e6;
    const perOp = (us: number) => (window.ops > 0 ? `${(us / window.ops).toFixed(1)} µs/op` : 'n/a');
    out.push(
      '',
      `#### ${window.name}: ${window.ops} ops; JS thread sampled busy ${(t.totalUs / 1000).toFixed(0)} ms of ` +
        `${seconds.toFixed(1)} s; socket writes ${(t.writesUs / 1000).toFixed(0)} ms (${perOp(t.writesUs)}); ` +
        `the rest ${((t.totalUs - t.writesUs) / 1000).toFixed(0)} ms (${perOp(t.totalUs - t.writesUs)})`,
      '',
      markdownTable(
        ['charged to (Node internals and native code go to their JS caller)', 'ms', 'µs/op', 'share'],
        top(t.byOwner, window.ops, 16),
      ),
      '',
      markdownTable(['function (self time)', 'ms', 'µs/op', 'share'], top(t.byFunction, window.ops, 20)),
    );
  }
  return out.join('\n');
}
