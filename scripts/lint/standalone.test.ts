import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

// The repository stands alone: a clone has nothing beside it, so no tracked file may point at
// documents or folders outside it. (The patterns are assembled so this file does not match.)
const outside = [
  ['..', '/shared'].join(''),
  ['DESIGN', '.md'].join(''),
  ['TOOLCHAIN', '.md'].join(''),
  ['/work', '/'].join(''),
];

it('no tracked file refers to files outside the repository', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
  const hits: string[] = [];
  for (const file of files) {
    if (file === 'package-lock.json') continue;
    let text: string;
    try {
      text = readFileSync(path.join(root, file), 'utf8');
    } catch {
      continue; // Deleted in the work tree but still in the index.
    }
    text.split('\n').forEach((line, i) => {
      for (const pattern of outside) if (line.includes(pattern)) hits.push(`${file}:${i + 1}: ${pattern}`);
    });
  }
  expect(hits).toEqual([]);
});
