import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * CPU accounting from /proc, so that the bench can say how much CPU the process under test
 * spent per command without instrumenting it. Linux only, which is what these machines run.
 */

/** Kernel clock ticks per second (the unit of utime and stime); 100 on every usual kernel. */
export const clockTicksPerSecond = (() => {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
})();

/**
 * User plus system CPU time of a process, in microseconds, summed over all its threads (the
 * kernel reports the whole thread group in /proc/<pid>/stat). Returns null once the process has
 * gone, so that a vanished process is visible instead of silently counting as zero.
 */
export function processCpuMicros(pid: number): number | null {
  const split = processCpuSplitMicros(pid);
  return split === null ? null : split.user + split.system;
}

/** The same as processCpuMicros, split into user and system (kernel) time. */
export function processCpuSplitMicros(pid: number): { user: number; system: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces or
  // parentheses, so the fields are counted from the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5) are utime and stime; fields[0] here is field 3.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return { user: (utime * 1_000_000) / clockTicksPerSecond, system: (stime * 1_000_000) / clockTicksPerSecond };
}

/** Sum of processCpuMicros over several processes; processes that vanished count as zero. */
export function processesCpuMicros(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (processCpuMicros(pid) ?? 0), 0);
}

export interface MachineTicks {
  busy: number;
  total: number;
}

/**
 * The whole machine's CPU ticks from the first line of /proc/stat. "Busy" is everything except
 * idle and iowait; comparing it with the processes the bench knows shows how much CPU other
 * work on the machine (another engineer's tests, say) took during a measurement.
 */
export function machineTicks(): MachineTicks {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  // Fields: user nice system idle iowait irq softirq steal guest guest_nice. Guest time is
  // already included in user, so only the first eight are added up.
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = values;
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { busy: total - idle - iowait, total };
}

export interface MachineInfo {
  cpu_model: string;
  nproc: number;
  memory_gib: number;
  node_version: string;
  postgres_version: string;
  kernel: string;
}

export function machineInfo(postgresVersion: string): MachineInfo {
  let cpuModel = 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match?.[1]) cpuModel = match[1].trim();
  } catch {
    // Not Linux, or /proc is hidden: the report says "unknown" rather than failing.
  }
  return {
    cpu_model: cpuModel,
    nproc: os.availableParallelism(),
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node_version: process.version,
    postgres_version: postgresVersion,
    kernel: `${os.type()} ${os.release()}`,
  };
}
