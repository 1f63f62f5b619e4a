/**
 * Makes a bench child process exit when the bench dies, even by SIGKILL, when no exit handler
 * of the parent gets to run. The parent gives each server child a stdin pipe and never writes
 * to it; the pipe reaches end-of-file only when the parent's end closes, that is when the
 * parent is gone. Waiting on it costs nothing while the child works, unlike polling the parent.
 */
export function exitWhenParentGoes(): void {
  // A terminal on stdin means a person started this by hand: there is no parent to watch.
  if (process.stdin.isTTY) return;
  process.stdin.on('end', () => process.exit(1));
  process.stdin.on('error', () => process.exit(1));
  process.stdin.resume();
}
