import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmod, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import { deriveAgeKeyPair } from '../../src/backup/age-key.js';
import { collect, encryptAge } from '../../src/backup/age-stream.js';
import {
  createArchive,
  deleteArchive,
  listArchives,
  readManifest,
  restoreArchive,
  verifyArchive,
} from '../../src/backup/archive.js';
import { BackupError, type BackupErrorCode } from '../../src/backup/errors.js';
import { utf8 } from '../../src/crypto/bytes.js';
import { DirectoryStore, type BackupStore, type StagedObject } from '../../src/backup/store.js';

import { hasAgeCli, hasGnuTar, pattern, run, tempDir } from './helpers.js';

const KP = deriveAgeKeyPair(new Uint8Array(32).fill(5));
const OTHER = deriveAgeKeyPair(new Uint8Array(32).fill(6));

let tmp: string;
let cleanup: () => Promise<void>;
let store: DirectoryStore;
beforeEach(async () => {
  ({ dir: tmp, cleanup } = await tempDir());
  store = new DirectoryStore(join(tmp, 'store'));
});
afterEach(() => cleanup());

async function expectCode(p: Promise<unknown>, code: BackupErrorCode): Promise<BackupError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, `expected ${code}`).toBeInstanceOf(BackupError);
  expect((e as BackupError).code).toBe(code);
  return e as BackupError;
}

/** docs/{a.txt, empty, sub/big.bin, link -> a.txt}, notes.md */
async function makeTree(): Promise<string[]> {
  const src = join(tmp, 'src');
  await mkdir(join(src, 'docs', 'sub'), { recursive: true });
  await writeFile(join(src, 'docs', 'a.txt'), pattern(1000, 1));
  await writeFile(join(src, 'docs', 'empty'), '');
  await writeFile(join(src, 'docs', 'sub', 'big.bin'), pattern(300_000, 2));
  await chmod(join(src, 'docs', 'sub', 'big.bin'), 0o600);
  await symlink('a.txt', join(src, 'docs', 'link'));
  await writeFile(join(src, 'notes.md'), '# notes\n');
  return [join(src, 'docs'), join(src, 'notes.md')];
}

/** Every path under `dir` with file contents, for comparing trees. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const n of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${n.name}` : n.name;
      if (n.isDirectory()) {
        out[r + '/'] = 'dir';
        await walk(join(d, n.name), r);
      } else if (n.isSymbolicLink()) out[r] = 'symlink';
      else out[r] = (await readFile(join(d, n.name))).toString('base64');
    }
  };
  await walk(dir, '').catch(() => undefined);
  return out;
}

async function sourceSnapshot(): Promise<Record<string, string>> {
  const s = await snapshot(join(tmp, 'src'));
  delete s['docs/link'];
  return s;
}

describe('create, list, restore, verify', () => {
  it('round-trips a tree with contents, modes and mtimes, and reports progress', async () => {
    const paths = await makeTree();
    const progress: number[] = [];
    const res = await createArchive(paths, KP.recipient, store, {
      onProgress: (p) => {
        expect(p.bytesTotal).toBe(301_008);
        progress.push(p.bytesDone);
      },
    });
    expect(res.skipped).toEqual([{ path: join(tmp, 'src', 'docs', 'link'), reason: 'symlink' }]);
    expect(progress[0]).toBe(0);
    expect(progress.at(-1)).toBe(301_008);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(res.manifest.entries.map((e) => e.path)).toEqual(['docs', 'docs/a.txt', 'docs/empty', 'docs/sub', 'docs/sub/big.bin', 'notes.md']);

    const list = await listArchives(store);
    expect(list).toEqual([res.summary]);
    expect(res.summary.keyMode).toBe('vault');
    // The clear summary says nothing about the files.
    const clear = await readFile(join(tmp, 'store', `${res.summary.id}.manifest.json`), 'utf8');
    expect(clear).not.toMatch(/docs|notes|sha256/);

    const out = join(tmp, 'out');
    const restored = await restoreArchive(res.summary.id, KP.identity, store, out);
    expect(restored.files).toBe(4);
    expect(await snapshot(out)).toEqual(await sourceSnapshot());
    for (const rel of ['docs/sub/big.bin', 'notes.md', 'docs/sub']) {
      const [a, b] = [await stat(join(tmp, 'src', rel)), await stat(join(out, rel))];
      expect(b.mode & 0o777).toBe(a.mode & 0o777);
      expect(Math.floor(b.mtimeMs)).toBe(Math.floor(a.mtimeMs));
    }
    expect((await verifyArchive(res.summary.id, KP.identity, store)).files).toBe(4);
    expect((await readManifest(res.summary.id, KP.identity, store)).totalBytes).toBe(301_008);
  });

  it('records the key mode and lists archives oldest first; delete removes one', async () => {
    const paths = await makeTree();
    const a = await createArchive(paths, KP.recipient, store, { now: () => new Date('2025-01-02T03:04:05.678Z') });
    const b = await createArchive(paths, KP.recipient, store, { keyMode: 'recovery-code', now: () => new Date('2024-01-01T00:00:00Z') });
    expect(a.summary.id).toMatch(/^20250102T030405Z-[0-9a-f]{16}$/);
    expect((await listArchives(store)).map((s) => [s.id, s.keyMode])).toEqual([
      [b.summary.id, 'recovery-code'],
      [a.summary.id, 'vault'],
    ]);
    await deleteArchive(b.summary.id, store);
    expect((await listArchives(store)).map((s) => s.id)).toEqual([a.summary.id]);
    expect((await store.list()).length).toBe(3);
  });

  it.skipIf(!hasAgeCli || !hasGnuTar)('is a plain age file of a tar: age -d | tar -x restores it without us', async () => {
    const paths = await makeTree();
    const { summary } = await createArchive(paths, KP.recipient, store);
    await writeFile(join(tmp, 'key'), KP.identity + '\n', { mode: 0o600 });
    const tar = await run('age', ['-d', '-i', join(tmp, 'key'), join(tmp, 'store', `${summary.id}.age`)]);
    await mkdir(join(tmp, 'gnu'));
    await run('tar', ['-x', '-C', join(tmp, 'gnu')], tar);
    expect(await snapshot(join(tmp, 'gnu'))).toEqual(await sourceSnapshot());
    const manifest = await run('age', ['-d', '-i', join(tmp, 'key'), join(tmp, 'store', `${summary.id}.manifest.age`)]);
    expect(JSON.parse(manifest.toString()).entries).toHaveLength(6);
  });
});

describe('restore never leaves partial output and never writes where it should not', () => {
  async function created(): Promise<string> {
    return (await createArchive(await makeTree(), KP.recipient, store)).summary.id;
  }
  const out = () => join(tmp, 'out');

  async function corrupt(id: string, f: (b: Buffer) => Buffer): Promise<void> {
    const p = join(tmp, 'store', `${id}.age`);
    await writeFile(p, f(await readFile(p)));
  }

  it('wrong key -> WrongKey before anything is written', async () => {
    const id = await created();
    await expectCode(restoreArchive(id, OTHER.identity, store, out()), 'WrongKey');
    await expectCode(verifyArchive(id, OTHER.identity, store), 'WrongKey');
    expect(await snapshot(out())).toEqual({});
  });

  it('a tampered archive -> Tampered, and the destination stays empty', async () => {
    const id = await created();
    await corrupt(id, (b) => {
      b[b.length - 40]! ^= 1;
      return b;
    });
    await expectCode(restoreArchive(id, KP.identity, store, out()), 'Tampered');
    expect(await snapshot(out())).toEqual({});
    await expectCode(verifyArchive(id, KP.identity, store), 'Tampered');
  });

  it('a truncated archive -> an error, and the destination stays empty', async () => {
    const id = await created();
    for (const cut of [100_000, 65536 + 16, 1]) {
      await corrupt(id, (b) => b.subarray(0, b.length - cut));
      const e = await restoreArchive(id, KP.identity, store, out()).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(BackupError);
      expect(['Truncated', 'Tampered']).toContain((e as BackupError).code);
      expect(await snapshot(out())).toEqual({});
    }
  });

  it('existing files are kept unless overwrite, and a conflict is found before decrypting', async () => {
    const id = await created();
    await mkdir(join(out(), 'docs'), { recursive: true });
    await writeFile(join(out(), 'docs', 'a.txt'), 'mine');
    await writeFile(join(out(), 'unrelated'), 'keep');
    const e = await expectCode(restoreArchive(id, KP.identity, store, out()), 'Exists');
    expect(e.message).toContain('docs/a.txt');
    expect(await readFile(join(out(), 'docs', 'a.txt'), 'utf8')).toBe('mine');
    expect(Object.keys(await snapshot(out()))).toEqual(['docs/', 'docs/a.txt', 'unrelated']);
    await restoreArchive(id, KP.identity, store, out(), { overwrite: true });
    expect(await readFile(join(out(), 'docs', 'a.txt'))).toEqual(Buffer.from(pattern(1000, 1)));
    expect(await readFile(join(out(), 'unrelated'), 'utf8')).toBe('keep');
  });

  it('a symlink already in the destination is not written through', async () => {
    const id = await created();
    await mkdir(join(tmp, 'elsewhere'));
    await mkdir(out());
    await symlink(join(tmp, 'elsewhere'), join(out(), 'docs'));
    await expectCode(restoreArchive(id, KP.identity, store, out(), { overwrite: true }), 'UnsafePath');
    expect(await readdir(join(tmp, 'elsewhere'))).toEqual([]);
  });

  /** Stores an archive whose tar is `tar` and whose manifest lists `entries`, both encrypted properly. */
  async function forge(tar: Uint8Array, entries: object[]): Promise<string> {
    const id = '20250101T000000Z-00000000000000aa';
    const ct = await collect(encryptAge([tar], KP.recipient));
    const manifest = {
      format: 'bkv-backup-manifest/v1', id, createdAt: '2025-01-01T00:00:00Z', keyMode: 'vault',
      totalBytes: entries.reduce((n: number, e) => n + ((e as { size?: number }).size ?? 0), 0),
      archiveBytes: ct.length, entries,
    };
    const put = async (name: string, body: Uint8Array) => (await store.stage(name, (async function* () { yield body; })())).commit();
    await put(`${id}.age`, ct);
    await put(`${id}.manifest.age`, await collect(encryptAge([utf8(JSON.stringify(manifest))], KP.recipient)));
    await put(`${id}.manifest.json`, utf8(JSON.stringify({ format: 'bkv-backup/v1', id, createdAt: manifest.createdAt, keyMode: 'vault', archiveBytes: ct.length })));
    return id;
  }

  it('a hostile tar inside an authentic archive cannot write outside the destination', async () => {
    const { rawTar } = await import('./hostile-tar.js');
    const sha = (await import('node:crypto')).createHash('sha256').update('x').digest('hex');
    const fileEntry = { path: 'ok', type: 'file', size: 1, sha256: sha, mode: 0o644, mtimeMs: 0 };
    for (const [tar, code] of [
      [rawTar([['../evil', '0', 'x']]), 'UnsafePath'],
      [rawTar([['ok', '0', 'x'], ['/tmp/evil', '0', 'x']]), 'UnsafePath'],
      [rawTar([['ok', '2', '']]), 'UnsupportedEntry'],
      [rawTar([['ok', '0', 'x'], ['ok', '0', 'x']]), 'HashMismatch'],
      [rawTar([['ok', '0', 'y']]), 'HashMismatch'],
      [rawTar([['other', '0', 'x']]), 'HashMismatch'],
      [rawTar([]), 'HashMismatch'],
    ] as const) {
      const id = await forge(tar, [fileEntry]);
      await expectCode(restoreArchive(id, KP.identity, store, out()), code);
      expect(await snapshot(out())).toEqual({});
      expect(await readdir(tmp)).not.toContain('evil');
    }
  });

  it('swapped objects are caught: a manifest from another archive, an archive from another', async () => {
    const paths = await makeTree();
    const a = (await createArchive(paths, KP.recipient, store)).summary.id;
    await writeFile(join(tmp, 'src', 'notes.md'), 'changed');
    const b = (await createArchive(paths, KP.recipient, store)).summary.id;
    const s = (n: string) => join(tmp, 'store', n);
    await writeFile(s(`${a}.manifest.age`), await readFile(s(`${b}.manifest.age`)));
    await expectCode(verifyArchive(a, KP.identity, store), 'HashMismatch');
    await writeFile(s(`${b}.age`), await readFile(s(`${a}.age`)));
    await expectCode(restoreArchive(b, KP.identity, store, out()), 'HashMismatch');
    expect(await snapshot(out())).toEqual({});
  });
});

/** Simulates the process dying at the k-th store operation: it and everything after do nothing. */
class CrashingStore implements BackupStore {
  ops = 0;
  crashed = false;
  constructor(
    private readonly inner: BackupStore,
    private readonly crashAt: number,
  ) {}
  private step(): void {
    if (this.crashed || ++this.ops === this.crashAt) {
      this.crashed = true;
      throw new Error('crash');
    }
  }
  async stage(name: string, body: AsyncIterable<Uint8Array>): Promise<StagedObject> {
    this.step();
    const s = await this.inner.stage(name, body);
    return {
      name: s.name,
      size: s.size,
      commit: async () => {
        this.step();
        await s.commit();
      },
      // A dead process cleans nothing up.
      discard: async () => undefined,
    };
  }
  get(name: string) {
    return this.inner.get(name);
  }
  list() {
    return this.inner.list();
  }
  async delete(name: string): Promise<void> {
    if (this.crashed) return;
    await this.inner.delete(name);
  }
}

describe('crash safety', () => {
  it('a crash at any store operation leaves either nothing listed or a complete archive', async () => {
    const paths = await makeTree();
    const outcomes: string[] = [];
    for (let k = 1; k <= 7; k++) {
      const dir = join(tmp, `store${k}`);
      const crashing = new CrashingStore(new DirectoryStore(dir), k);
      const res = await createArchive(paths, KP.recipient, crashing).catch(() => null);
      const after = new DirectoryStore(dir); // the restarted process
      const list = await listArchives(after);
      if (list.length === 0) {
        outcomes.push('none');
        continue;
      }
      expect(list).toHaveLength(1);
      expect(res).not.toBeNull();
      await verifyArchive(list[0]!.id, KP.identity, after);
      outcomes.push('complete');
    }
    // 3 stages + 3 commits: crashes at operations 1..6 leave nothing; after that, a full archive.
    expect(outcomes).toEqual(['none', 'none', 'none', 'none', 'none', 'none', 'complete']);
  });

  it('a cancelled create leaves nothing, not even staging files', async () => {
    const paths = await makeTree();
    const ac = new AbortController();
    await expectCode(
      createArchive(paths, KP.recipient, store, { signal: ac.signal, onProgress: (p) => p.bytesDone > 0 && ac.abort() }),
      'Aborted',
    );
    expect(await listArchives(store)).toEqual([]);
    expect(await readdir(join(tmp, 'store'))).toEqual([]);
  });

  it('staging files of a crashed writer are invisible and swept when old', async () => {
    const staged = await store.stage('20250101T000000Z-0000000000000000.age', (async function* () { yield utf8('x'); })());
    expect(await store.list()).toEqual([]);
    await expectCode(store.get('20250101T000000Z-0000000000000000.age'), 'NotFound');
    expect(await store.sweepStaging(60_000)).toBe(0);
    expect(await store.sweepStaging(60_000, Date.now() + 120_000)).toBe(1);
    await expect(staged.commit()).rejects.toThrow();
  });

  it('a file that shrinks while being archived -> FileChanged, nothing stored', async () => {
    const src = join(tmp, 'shrinking');
    await writeFile(src, pattern(3 << 20));
    await expectCode(
      // Synchronous: an async truncate races the reads (read-ahead may finish the file first).
      createArchive([src], KP.recipient, store, { onProgress: (p) => void (p.bytesDone > 0 && truncateSync(src, 10)) }),
      'FileChanged',
    );
    expect(await listArchives(store)).toEqual([]);
    expect(await readdir(join(tmp, 'store'))).toEqual([]);
  });
});

describe('edge cases', () => {
  it('an empty directory round-trips', async () => {
    await mkdir(join(tmp, 'empty-dir'));
    const { summary, manifest } = await createArchive([join(tmp, 'empty-dir')], KP.recipient, store);
    expect(manifest.totalBytes).toBe(0);
    await restoreArchive(summary.id, KP.identity, store, join(tmp, 'out'));
    expect(await snapshot(join(tmp, 'out'))).toEqual({ 'empty-dir/': 'dir' });
  });

  it('a cancelled restore leaves the destination empty', async () => {
    const { summary } = await createArchive(await makeTree(), KP.recipient, store);
    const ac = new AbortController();
    await expectCode(
      restoreArchive(summary.id, KP.identity, store, join(tmp, 'out'), { signal: ac.signal, onProgress: (p) => p.bytesDone > 2000 && ac.abort() }),
      'Aborted',
    );
    expect(await snapshot(join(tmp, 'out'))).toEqual({});
  });

  it('two named paths with the same base name are refused', async () => {
    await mkdir(join(tmp, 'a', 'x'), { recursive: true });
    await mkdir(join(tmp, 'b', 'x'), { recursive: true });
    await expectCode(createArchive([join(tmp, 'a', 'x'), join(tmp, 'b', 'x')], KP.recipient, store), 'BadArgument');
  });

  it('unknown archive ids are NotFound or BadArgument', async () => {
    await expectCode(restoreArchive('20250101T000000Z-0123456789abcdef', KP.identity, store, join(tmp, 'out')), 'NotFound');
    await expectCode(verifyArchive('../../etc/passwd', KP.identity, store), 'BadArgument');
  });
});

describe('DirectoryStore', () => {
  it('a body that fails mid-stream leaves no staging file', async () => {
    const failing = (async function* () {
      yield utf8('partial');
      throw new Error('source failed');
    })();
    await expect(store.stage('x.age', failing)).rejects.toThrow('source failed');
    expect(await readdir(join(tmp, 'store'))).toEqual([]);
  });

  it('refuses object names with path syntax', async () => {
    for (const name of ['../x', '.hidden', 'a/b', '', 'x'.repeat(300)]) {
      await expectCode(store.delete(name), 'BadArgument');
      await expectCode(store.get(name), 'BadArgument');
    }
  });
});
