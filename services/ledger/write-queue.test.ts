import { describe, expect, it } from 'vitest';
import { LedgerError } from './domain/errors.js';
import type { WriteResult } from './domain/types.js';
import type { BatchItem, Outcome } from './execute-batch.js';
import { WriteQueue } from './write-queue.js';

// The queue's own rules, with a stand-in for the batch executor (the real one is exercised by
// every e2e test): group commit, one batch at a time, the next batch started before the
// previous one is answered, the bound on waiting commands, and close().

function item(key: string): BatchItem {
  return {
    command: { kind: 'CONSUME', idempotencyKey: key, userId: 'u1', credits: 1n, metadata: {} } as unknown as BatchItem['command'],
    requestHash: Buffer.alloc(32),
    actor: 'test',
    deadlineMs: Number.POSITIVE_INFINITY,
  };
}

interface Run {
  keys: string[];
  finish(outcomes?: Outcome[]): void;
}

/** An executor whose batches end when the test says so; it records what happened, in order. */
function controlledExecutor(events: string[]) {
  const runs: Run[] = [];
  let running = 0;
  let runningMax = 0;
  const execute = (items: BatchItem[]): Promise<Outcome[]> => {
    const keys = items.map((i) => i.command.idempotencyKey);
    events.push(`execute ${keys.join(',')}`);
    running += 1;
    runningMax = Math.max(runningMax, running);
    return new Promise<Outcome[]>((resolve) => {
      runs.push({
        keys,
        finish: (outcomes) => {
          running -= 1;
          resolve(outcomes ?? keys.map((_, i) => ({ ok: true, result: { entryId: BigInt(runs.length * 100 + i), replayed: false } as WriteResult })));
        },
      });
    });
  };
  return { execute, runs, runningMax: () => runningMax };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('WriteQueue', () => {
  it('groups what arrives while a batch runs, runs one batch at a time, and starts the next before answering', async () => {
    const events: string[] = [];
    const ex = controlledExecutor(events);
    let idle = 0;
    const queue = new WriteQueue({ execute: ex.execute, batchSizeMax: 2, queueLengthMax: 10, onIdle: () => (idle += 1) });
    const answered = (key: string) => (r: WriteResult) => void events.push(`answered ${key} ${r.entryId}`);
    const a = queue.submit(item('a')).then(answered('a'));
    await turn();
    expect(ex.runs.map((r) => r.keys)).toEqual([['a']]);
    const rest = ['b', 'c', 'd'].map((k) => queue.submit(item(k)).then(answered(k)));
    await turn();
    // Nothing new starts while a batch runs.
    expect(ex.runs).toHaveLength(1);
    ex.runs[0]!.finish();
    await a;
    // batchSizeMax caps the next batch; it started before "a" was answered.
    expect(events).toEqual(['execute a', 'execute b,c', 'answered a 100']);
    ex.runs[1]!.finish();
    await Promise.all(rest.slice(0, 2));
    ex.runs[2]!.finish();
    await Promise.all(rest);
    expect(events).toEqual([
      'execute a',
      'execute b,c',
      'answered a 100',
      'execute d',
      'answered b 200',
      'answered c 201',
      'answered d 300',
    ]);
    expect(ex.runningMax()).toBe(1);
    expect(idle).toBe(1);
    expect(queue.length).toBe(0);
  });

  it('gives each caller its own outcome, and an executor failure to the whole batch only', async () => {
    let calls = 0;
    const queue = new WriteQueue({
      execute: async (items) => {
        calls += 1;
        if (calls === 1) throw new Error('connection lost');
        return items.map((i, n) =>
          n === 0
            ? { ok: false, error: new LedgerError('FAILED_PRECONDITION', `${i.command.idempotencyKey} refused`) }
            : { ok: true, result: { entryId: BigInt(n), replayed: false } },
        );
      },
      batchSizeMax: 10,
      queueLengthMax: 10,
    });
    const first = queue.submit(item('x'));
    const later = [queue.submit(item('y')), queue.submit(item('z'))];
    await expect(first).rejects.toThrow('connection lost');
    const [y, z] = await Promise.allSettled(later);
    // y and z were submitted in the same turn as x, so they shared its failed batch.
    expect(y).toMatchObject({ status: 'rejected', reason: { message: 'connection lost' } });
    expect(z).toMatchObject({ status: 'rejected', reason: { message: 'connection lost' } });
    const again = await Promise.allSettled([queue.submit(item('y')), queue.submit(item('z'))]);
    expect(again[0]).toMatchObject({ status: 'rejected', reason: { message: 'y refused' } });
    expect(again[1]).toMatchObject({ status: 'fulfilled', value: { entryId: 1n } });
  });

  it('answers a batch whose executor throws instead of rejecting, and keeps serving', async () => {
    let calls = 0;
    const queue = new WriteQueue({
      execute: (items) => {
        calls += 1;
        if (calls === 1) throw new Error('thrown synchronously');
        return Promise.resolve(items.map(() => ({ ok: true as const, result: { entryId: 7n, replayed: false } })));
      },
      batchSizeMax: 10,
      queueLengthMax: 10,
    });
    await expect(queue.submit(item('p'))).rejects.toThrow('thrown synchronously');
    await expect(queue.submit(item('q'))).resolves.toMatchObject({ entryId: 7n });
    await queue.close();
  });

  it('refuses beyond queueLengthMax with RESOURCE_EXHAUSTED, and after close with UNAVAILABLE', async () => {
    const ex = controlledExecutor([]);
    const queue = new WriteQueue({ execute: ex.execute, batchSizeMax: 1, queueLengthMax: 2 });
    const accepted = [queue.submit(item('1')), queue.submit(item('2'))];
    await expect(queue.submit(item('3'))).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    await turn();
    // One left the queue for its batch: there is room for one more.
    accepted.push(queue.submit(item('4')));
    const closed = queue.close();
    await expect(queue.submit(item('5'))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    let closedYet = false;
    void closed.then(() => (closedYet = true));
    for (let i = 0; i < 3; i += 1) {
      await turn();
      expect(closedYet).toBe(false);
      ex.runs[i]!.finish();
    }
    await Promise.all(accepted);
    await closed;
    expect(ex.runs.map((r) => r.keys)).toEqual([['1'], ['2'], ['4']]);
  });
});
