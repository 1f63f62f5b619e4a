import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { forkModule } from './children.js';
import { benchDir, repoRoot } from './paths.js';
import type { ChildMessage, ParentMessage } from './protocol.js';
import { within } from './waits.js';

/**
 * The client processes (client-worker.ts) as the parent sees them: each answers requests by
 * id over its IPC channel; a process that dies fails whatever it was asked.
 */
export interface Worker {
  index: number;
  process: ChildProcess;
  pid: number;
  exited: Promise<string>;
  pending: Map<number, { resolve: (m: ChildMessage) => void; reject: (e: Error) => void }>;
}

let lastRequestId = 0;

/** Ids pair each request to a client process with its answer. */
export function nextRequestId(): number {
  lastRequestId += 1;
  return lastRequestId;
}

export async function startWorkers(count: number): Promise<Worker[]> {
  const modulePath = path.join(benchDir, 'client-worker.ts');
  const workers = await Promise.all(
    Array.from({ length: count }, async (_, index): Promise<Worker> => {
      const { process: child, exited } = forkModule(modulePath, repoRoot);
      if (child.pid === undefined) throw new Error(`client process ${index} could not be started`);
      const worker: Worker = { index, process: child, pid: child.pid, exited, pending: new Map() };
      const hello = new Promise<void>((resolve, reject) => {
        child.on('message', (message: ChildMessage) => {
          if (message.type === 'hello') return resolve();
          const waiter = worker.pending.get(message.id);
          if (!waiter) return;
          worker.pending.delete(message.id);
          if (message.type === 'failure') waiter.reject(new Error(`client process ${index}: ${message.message}`));
          else waiter.resolve(message);
        });
        void exited.then((how) => {
          const error = new Error(`client process ${index} ended (${how})`);
          reject(error);
          for (const waiter of worker.pending.values()) waiter.reject(error);
          worker.pending.clear();
        });
      });
      // Loading TypeScript through tsx takes a moment; the first scenario must not pay for it.
      await within(hello, 60_000, `client process ${index} start`);
      return worker;
    }),
  );
  return workers;
}

export function ask(worker: Worker, message: Exclude<ParentMessage, { type: 'shutdown' }>, timeoutMs: number): Promise<ChildMessage> {
  const answer = new Promise<ChildMessage>((resolve, reject) => {
    worker.pending.set(message.id, { resolve, reject });
    worker.process.send(message);
  });
  return within(answer, timeoutMs, `client process ${worker.index}, request ${message.type}`);
}

