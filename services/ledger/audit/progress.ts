/**
 * Progress on stderr (stdout carries the results): a bar redrawn in place on a terminal, plain
 * lines otherwise (CI logs, pipes), at most one per `lineEveryMs` or every 10 %.
 */
export interface Progress {
  update(done: number, total: number): void;
  finish(summary: string): void;
}

export function createProgress(
  label: string,
  stream: NodeJS.WriteStream = process.stderr,
  options: { tty?: boolean; lineEveryMs?: number } = {},
): Progress {
  const tty = options.tty ?? stream.isTTY === true;
  const lineEveryMs = options.lineEveryMs ?? 5_000;
  const started = performance.now();
  let lastDraw = 0;
  let lastTenth = -1;
  const rate = (done: number) => {
    const s = (performance.now() - started) / 1000;
    return s > 0 ? Math.round(done / s) : 0;
  };
  return {
    update(done, total) {
      const now = performance.now();
      const fraction = total > 0 ? Math.min(1, done / total) : 1;
      if (tty) {
        if (now - lastDraw < 100 && done < total) return;
        lastDraw = now;
        const width = 30;
        const filled = Math.round(fraction * width);
        const perSecond = rate(done);
        const eta = perSecond > 0 ? Math.ceil((total - done) / perSecond) : 0;
        stream.write(
          `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
            `${done}/${total} ${perSecond}/s ETA ${eta}s\x1b[K`,
        );
        return;
      }
      const tenth = Math.floor(fraction * 10);
      if (tenth === lastTenth && now - lastDraw < lineEveryMs) return;
      lastTenth = tenth;
      lastDraw = now;
      stream.write(`${label}: ${done}/${total} (${(fraction * 100).toFixed(0)}%), ${rate(done)}/s\n`);
    },
    finish(summary) {
      stream.write(tty ? `\r${label}: ${summary}\x1b[K\n` : `${label}: ${summary}\n`);
    },
  };
}
