/**
 * Memory stays flat for big archives: a 2 GiB sparse file (BKV_BIG_FILE_MIB to change) goes
 * through create and restore while RSS is sampled; growth over the starting RSS must stay under
 * 200 MiB, where a whole-file buffer would need 2 GiB. Files live in the OS temp dir and are
 * removed afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { deriveAgeKeyPair } from '../../src/backup/age-key.js';
import { createArchive, restoreArchive } from '../../src/backup/archive.js';
import { DirectoryStore } from '../../src/backup/store.js';
import { tempDir } from './helpers.js';

const MIB = 1 << 20;
const SIZE = Number(process.env.BKV_BIG_FILE_MIB ?? 2048) * MIB;
const LIMIT = 200 * MIB;

describe('big files', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir('bkv-big-')));
  afterAll(() => cleanup());

  it(`a ${SIZE / MIB} MiB sparse file round-trips with RSS growth under 200 MiB`, async () => {
    const src = join(dir, 'sparse.bin');
    const fh = await open(src, 'w');
    // Sparse, with a little real data at both ends so content matters to the hash check.
    await fh.write(Buffer.from('head'), 0, 4, 0);
    await fh.write(Buffer.from('tail'), 0, 4, SIZE - 4);
    await fh.close();

    const kp = deriveAgeKeyPair(new Uint8Array(32).fill(9));
    const store = new DirectoryStore(join(dir, 'store'));
    globalThis.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
    try {
      const t0 = performance.now();
      const { summary } = await createArchive([src], kp.recipient, store, { onProgress: sample });
      const t1 = performance.now();
      const res = await restoreArchive(summary.id, kp.identity, store, join(dir, 'out'), { onProgress: sample });
      const t2 = performance.now();
      expect(res.bytes).toBe(SIZE);
      expect((await stat(join(dir, 'out', 'sparse.bin'))).size).toBe(SIZE);
      console.log(
        `big file: ${SIZE / MIB} MiB, create ${((SIZE / MIB) / ((t1 - t0) / 1000)).toFixed(0)} MiB/s, ` +
          `restore ${((SIZE / MIB) / ((t2 - t1) / 1000)).toFixed(0)} MiB/s, RSS growth ${((peak - base) / MIB).toFixed(1)} MiB`,
      );
    } finally {
      clearInterval(timer);
    }
    expect(peak - base).toBeLessThan(LIMIT);
  }, 600_000);
});
