import { describe, expect, it } from 'vitest';
import { createProgress } from './progress.js';

// Progress (audit README): a bar redrawn in place on a terminal, plain lines otherwise.

function sink() {
  const chunks: string[] = [];
  return { chunks, stream: { write: (s: string) => (chunks.push(s), true), isTTY: false } as unknown as NodeJS.WriteStream };
}

describe('progress', () => {
  it('writes a plain line per tenth when not on a terminal, and a summary', () => {
    const s = sink();
    const p = createProgress('verify', s.stream, { tty: false });
    for (let i = 0; i <= 1000; i += 50) p.update(i, 1000);
    p.finish('done');
    expect(s.chunks.every((c) => c.endsWith('\n') && !c.includes('\r'))).toBe(true);
    expect(s.chunks.length).toBe(12);
    expect(s.chunks[0]).toMatch(/^verify: 0\/1000 \(0%\)/);
    expect(s.chunks.at(-1)).toBe('verify: done\n');
  });

  it('redraws one bar in place on a terminal', () => {
    const s = sink();
    const p = createProgress('verify', s.stream, { tty: true });
    p.update(500, 1000);
    p.update(1000, 1000);
    p.finish('done');
    expect(s.chunks[0]).toMatch(/^\rverify \[#{15}\.{15}\]  50% 500\/1000/);
    expect(s.chunks.at(-1)).toBe('\rverify: done\x1b[K\n');
  });
});
