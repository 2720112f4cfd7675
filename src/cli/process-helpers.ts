/** Helpers shared by the long-running `serve` commands. */
import { InputError } from './secrets.js';

export function intOption(v: string, name: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new InputError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** Tells a supervising `bkv dev` (over IPC) that this process is ready or failed. */
export function announce(msg: Record<string, unknown>): void {
  if (process.send) process.send(msg);
}

/** Closes cleanly on SIGTERM, SIGINT, or when the supervisor goes away. */
export function onSignals(close: () => Promise<void>): void {
  let closing = false;
  const stop = (): void => {
    if (closing) return;
    closing = true;
    void close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
}
