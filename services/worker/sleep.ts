/** Thrown out of a wait when the worker is shutting down: the job is handed back to the queue. */
export class HandBack extends Error {
  constructor() {
    super('worker shutting down: job handed back');
  }
}

/** Waits `ms`, or throws HandBack as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(new HandBack());
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new HandBack());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
