/**
 * Backup archive throughput (DESIGN section 8): `createArchive` (read, SHA-256, tar, age encrypt,
 * write, fsync) and `restoreArchive` (read, age decrypt, untar, SHA-256 check, write, fsync,
 * rename) of one big file, against Debian's `age` CLI encrypting and decrypting the same file to
 * the same recipient (the Go reference implementation, which does no hashing, tar or fsync), and
 * the peak RSS of this process. Run alone: `node dist/bench/backup.js [--quick]`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deriveAgeKeyPair } from '../src/backup/age-key.js';
import { createArchive, restoreArchive } from '../src/backup/archive.js';
import { DirectoryStore } from '../src/backup/store.js';
import type { BenchResult } from './result.js';

const MIB = 1 << 20;

function execP(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 1 << 20 }, (err, _stdout, stderr) => (err ? reject(err) : resolve(stderr)));
  });
}

interface Timing {
  /** Wall-clock seconds. */
  wall: number;
  /** CPU seconds (user + system) of this process: on a shared machine, wall time hides waits. */
  cpu: number;
}

async function timed(f: () => Promise<unknown>): Promise<Timing> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await f();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

/** Best (shortest) of `trials` runs: the machine may be shared, the best run is least disturbed. */
async function best(trials: number, f: (trial: number) => Promise<unknown>): Promise<Timing> {
  let min: Timing = { wall: Infinity, cpu: Infinity };
  for (let t = 0; t < trials; t++) {
    const r = await timed(() => f(t));
    if (r.wall < min.wall) min = r;
  }
  return min;
}

const hasAge = (): Promise<boolean> => execP('age', ['--version']).then(() => true, () => false);

/** Peak RSS (KiB) of a command, through GNU time when it is installed. */
async function childPeakRssMiB(cmd: string, args: string[]): Promise<number | undefined> {
  if (!existsSync('/usr/bin/time')) return undefined;
  const stderr = await execP('/usr/bin/time', ['-f', 'maxrss=%M', cmd, ...args]);
  const m = /maxrss=(\d+)/.exec(stderr);
  return m ? Number(m[1]) / 1024 : undefined;
}

const round = (v: number, d = 1): number => Math.round(v * 10 ** d) / 10 ** d;

export async function benchBackup(opts: { quick: boolean }): Promise<BenchResult[]> {
  const size = (opts.quick ? 256 : 1024) * MIB;
  const trials = opts.quick ? 1 : 2;
  const mb = size / 1e6;
  const dir = await mkdtemp(join(tmpdir(), 'bkv-bench-backup-'));
  try {
    // A sparse file: reading it costs no disk time, so the numbers are the pipelines' own.
    const input = join(dir, 'input.bin');
    const fh = await open(input, 'w');
    await fh.truncate(size);
    await fh.close();
    const kp = deriveAgeKeyPair(new Uint8Array(32).fill(42));
    const keyFile = join(dir, 'key.txt');
    await writeFile(keyFile, kp.identity + '\n', { mode: 0o600 });

    const base = process.memoryUsage().rss;
    let peak = base;
    const sample = (): void => void (peak = Math.max(peak, process.memoryUsage().rss));
    const sampler = setInterval(sample, 20);

    let lastId = '';
    const store = (t: number) => new DirectoryStore(join(dir, `store${t}`));
    const createS = await best(trials, async (t) => {
      await rm(join(dir, `store${t}`), { recursive: true, force: true });
      lastId = (await createArchive([input], kp.recipient, store(t), { onProgress: sample })).summary.id;
    });
    const restoreStore = store(trials - 1);
    const restoreS = await best(trials, async (t) => {
      await rm(join(dir, `out${t}`), { recursive: true, force: true });
      await restoreArchive(lastId, kp.identity, restoreStore, join(dir, `out${t}`), { onProgress: sample });
      await rm(join(dir, `out${t}`), { recursive: true, force: true });
    });
    clearInterval(sampler);
    const ownPeakMiB = process.resourceUsage().maxRSS / 1024;
    const growthMiB = (peak - base) / MIB;

    let ageEncS: Timing | undefined;
    let ageDecS: Timing | undefined;
    let ageRss: number | undefined;
    if (await hasAge()) {
      const ct = join(dir, 'cli.age');
      ageEncS = await best(trials, () => execP('age', ['-r', kp.recipient, '-o', ct, input]));
      ageDecS = await best(trials, async () => {
        await execP('age', ['-d', '-i', keyFile, '-o', join(dir, 'cli.out'), ct]);
        await rm(join(dir, 'cli.out'), { force: true });
      });
      ageRss = await childPeakRssMiB('age', ['-d', '-i', keyFile, '-o', '/dev/null', ct]);
    }

    const host = `${availableParallelism()} cores, node ${process.version}, best of ${trials}`;
    const what = `${size / MIB} MiB sparse file, local DirectoryStore on ${tmpdir()}`;
    const vs = (ours: Timing, theirs: Timing | undefined) =>
      theirs === undefined ? {} : { baseline: round(mb / theirs.wall), ratio: round(theirs.wall / ours.wall, 2) };
    const cpu = (t: Timing) => `this process used ${round(t.cpu, 2)} CPU-s in ${round(t.wall, 2)} s wall`;
    return [
      {
        name: 'backup.create',
        unit: 'MB/s',
        value: round(mb / createS.wall),
        ...vs(createS, ageEncS),
        conditions: `createArchive: read + SHA-256 + tar + age + write + fsync; ${what}; baseline: age CLI encrypt to the same recipient${ageEncS === undefined ? ' (age CLI not installed)' : ''}; ${cpu(createS)}; ${host}`,
      },
      {
        name: 'backup.restore',
        unit: 'MB/s',
        value: round(mb / restoreS.wall),
        ...vs(restoreS, ageDecS),
        conditions: `restoreArchive: age decrypt + untar + SHA-256 check + write + fsync + rename; ${what}; baseline: age CLI decrypt of the same file${ageDecS === undefined ? ' (age CLI not installed)' : ''}; ${cpu(restoreS)}; ${host}`,
      },
      {
        name: 'backup.peak-rss',
        unit: 'MiB',
        value: round(ownPeakMiB),
        ...(ageRss === undefined ? {} : { baseline: round(ageRss), ratio: round(ownPeakMiB / ageRss, 2) }),
        conditions: `peak RSS of the whole bench process (node runtime included); RSS growth during create/restore ${round(growthMiB)} MiB; baseline: age CLI decrypt peak RSS; ${host}`,
      },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchBackup({ quick: process.argv.includes('--quick') });
  console.table(results.map((r) => ({ name: r.name, value: r.value, unit: r.unit, baseline: r.baseline ?? '', ratio: r.ratio ?? '' })));
  for (const r of results) console.log(`${r.name}: ${r.conditions}`);
}
