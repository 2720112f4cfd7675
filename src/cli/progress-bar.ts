/**
 * Progress for long backup work: a cli-progress bar (bytes, rate, ETA) on a terminal, nothing
 * otherwise. Not a TTY means a script or a log file, where redrawn bars are noise; --quiet asks
 * for silence on a terminal too.
 */
import cliProgress from 'cli-progress';
import type { Progress } from '../backup/index.js';

export interface ProgressReporter {
  update(p: Progress): void;
  /** Removes the bar; call before printing anything else. Idempotent. */
  stop(): void;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/** 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

/** The library reports every chunk (up to thousands a second); the bar needs a few a second. */
const MIN_INTERVAL_MS = 100;

export interface ProgressBarOptions {
  quiet?: boolean;
  /** Where the bar goes; stderr, so stdout stays clean for ids and JSON. */
  stream?: NodeJS.WriteStream;
  now?: () => number;
}

export function progressReporter(label: string, options: ProgressBarOptions = {}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  if (options.quiet || !stream.isTTY) return { update: () => undefined, stop: () => undefined };
  const now = options.now ?? (() => performance.now());
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} {bar} {percentage}% | {done} / {all} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      // ETA over the last ~5 s of 100 ms updates: steady, yet follows a change of speed.
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = now();
  let started = false;
  let stopped = false;
  let last = -Infinity;
  return {
    update(p) {
      if (stopped) return;
      const t = now();
      const finished = p.bytesDone >= p.bytesTotal;
      if (started && !finished && t - last < MIN_INTERVAL_MS) return;
      last = t;
      const secs = (t - t0) / 1000;
      const payload = {
        done: formatBytes(p.bytesDone),
        all: formatBytes(p.bytesTotal),
        rate: secs > 0 ? `${formatBytes(p.bytesDone / secs)}/s` : '-',
      };
      if (!started) {
        bar.start(Math.max(p.bytesTotal, 1), p.bytesDone, payload);
        started = true;
      } else {
        bar.update(p.bytesDone, payload);
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (started) bar.stop();
    },
  };
}
