/**
 * Restoring and verifying archives.
 *
 * What restore promises:
 * - Nothing outside `toDir`: entry paths are checked by the tar reader (no absolute paths, no
 *   '..'), resolved paths are re-checked to lie under `toDir`, and every directory on the way is
 *   lstat'ed so a symlink already in `toDir` cannot redirect a write.
 * - Nothing replaced unless `overwrite`: conflicts are found before decryption starts, and files
 *   are placed with link(2), which fails rather than replace a file that appeared since.
 * - No partial output: content goes to a staging directory inside `toDir` under neutral names;
 *   only after the whole age stream has authenticated and every file matched the manifest's
 *   size and SHA-256 are files moved into place. If placing fails, what was placed is removed
 *   (with `overwrite`, replaced files cannot be brought back; that is what overwrite means).
 */
import { createHash } from 'node:crypto';
import { chmod, link, lstat, mkdir, mkdtemp, open, realpath, rename, rm, rmdir, unlink, utimes } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { collect, decryptAge } from './age-stream.js';
import { BackupError } from './errors.js';
import {
  archiveObject,
  checkArchiveId,
  manifestObject,
  parseManifest,
  type Manifest,
  type ManifestEntry,
} from './manifest.js';
import { checkAborted, type ProgressCallback } from './progress.js';
import { isNoEntry, type BackupStore } from './store.js';
import { writeChunks } from './file-write.js';
import { readTar } from './tar.js';

export interface VerifyOptions {
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface RestoreOptions extends VerifyOptions {
  /** Replace existing files of the same name. Directories are merged either way. */
  overwrite?: boolean;
}

export interface RestoreResult {
  readonly manifest: Manifest;
  readonly files: number;
  readonly directories: number;
  readonly bytes: number;
}

const MAX_MANIFEST = 256 * 1024 * 1024;

/** Decrypts and checks the archive's manifest. `WrongKey` surfaces here, before any long work. */
export async function readManifest(id: string, identity: string, store: BackupStore): Promise<Manifest> {
  checkArchiveId(id);
  const bytes = await collect(decryptAge(await store.get(manifestObject(id)), identity), MAX_MANIFEST);
  const manifest = parseManifest(bytes);
  if (manifest.id !== id) throw new BackupError('HashMismatch', `the manifest stored for ${id} belongs to archive ${manifest.id}`);
  return manifest;
}

type EntrySink = (entry: ManifestEntry, body: AsyncIterable<Uint8Array>) => Promise<void>;

/**
 * Streams the archive, checks each entry against the manifest and hands its content to `sink`.
 * Resolves only when the age stream has authenticated to its end and every manifest entry was
 * seen with the right size and hash.
 */
async function scanArchive(
  manifest: Manifest,
  identity: string,
  store: BackupStore,
  sink: EntrySink,
  options: VerifyOptions,
): Promise<void> {
  const expected = new Map(manifest.entries.map((e) => [e.path, e]));
  const seen = new Set<string>();
  let cipherBytes = 0;
  const source = await store.get(archiveObject(manifest.id));
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const p of source) {
      cipherBytes += p.length;
      yield p;
    }
  }
  let bytesDone = 0;
  const bytesTotal = manifest.totalBytes;
  options.onProgress?.({ bytesDone, bytesTotal });

  for await (const entry of readTar(decryptAge(counted(), identity))) {
    const { path, type, size } = entry.header;
    const m = expected.get(path);
    if (m === undefined) throw new BackupError('HashMismatch', `the archive holds ${path}, which its manifest does not list`);
    if (seen.has(path)) throw new BackupError('HashMismatch', `the archive holds ${path} twice`);
    if (m.type !== type || m.size !== size) throw new BackupError('HashMismatch', `${path} differs from the manifest (type or size)`);
    seen.add(path);
    const hash = createHash('sha256');
    let got = 0;
    async function* checked(): AsyncGenerator<Uint8Array> {
      for await (const p of entry.body) {
        checkAborted(options.signal);
        hash.update(p);
        got += p.length;
        bytesDone += p.length;
        options.onProgress?.({ bytesDone, bytesTotal });
        yield p;
      }
    }
    await sink(m, checked());
    if (m.type === 'file' && (got !== m.size || hash.digest('hex') !== m.sha256)) {
      throw new BackupError('HashMismatch', `${path}: content does not match the manifest's SHA-256`);
    }
  }
  // readTar has read the age stream to its end, so its final chunk has authenticated.
  const missing = manifest.entries.length - seen.size;
  if (missing > 0) throw new BackupError('HashMismatch', `the archive lacks ${missing} entries its manifest lists`);
  // Per-file hashes already catch an archive swapped for another with different content (and a
  // swap between archives of identical content changes nothing restored); the size is a free
  // extra check. No ciphertext hash: it would cost a fifth of the CPU for no added guarantee.
  if (cipherBytes !== manifest.archiveBytes) {
    throw new BackupError('HashMismatch', 'the archive is not the one its manifest was written for');
  }
}

/** Decrypts the archive and checks every entry against the manifest. Writes nothing. */
export async function verifyArchive(
  id: string,
  identity: string,
  store: BackupStore,
  options: VerifyOptions = {},
): Promise<RestoreResult> {
  const manifest = await readManifest(id, identity, store);
  let files = 0;
  let directories = 0;
  await scanArchive(
    manifest,
    identity,
    store,
    async (m, body) => {
      for await (const _ of body) {
        /* hashed by scanArchive */
      }
      if (m.type === 'file') files++;
      else directories++;
    },
    options,
  );
  return { manifest, files, directories, bytes: manifest.totalBytes };
}

// ---- placing files under the destination ----

/**
 * utimes takes float seconds and truncates to nanoseconds; ms / 1000 can land just below the
 * intended millisecond (1795781328.691 -> ...690999984 ns). Half a microsecond keeps it inside.
 */
function utimeSeconds(ms: number): number {
  return ms / 1000 + 5e-7;
}

/** The absolute path of `rel` under `root`, which it must not leave. */
function inside(root: string, rel: string): string {
  const p = rel === '' ? root : resolve(root, ...rel.split('/'));
  const r = relative(root, p);
  if (r === '..' || r.startsWith('..' + '/') || r.startsWith('..\\') || isAbsolute(r)) {
    throw new BackupError('UnsafePath', `${rel} would be restored outside the destination`);
  }
  return p;
}

async function lstatOrNull(p: string): Promise<Awaited<ReturnType<typeof lstat>> | null> {
  try {
    return await lstat(p);
  } catch (e) {
    if (isNoEntry(e)) return null;
    throw e;
  }
}

/**
 * Checks every existing component of `rel`'s parent is a real directory (not a symlink), and
 * creates missing ones when `create` (recording them in `created` for rollback).
 */
async function walkParents(root: string, rel: string, create: boolean, created: string[]): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let cur = '';
  for (const c of parts) {
    cur = cur === '' ? c : `${cur}/${c}`;
    await ensureDir(root, cur, create, created);
  }
}

async function ensureDir(root: string, rel: string, create: boolean, created: string[]): Promise<void> {
  const p = inside(root, rel);
  const st = await lstatOrNull(p);
  if (st === null) {
    if (!create) return;
    await mkdir(p, { mode: 0o700 });
    created.push(p);
  } else if (st.isSymbolicLink()) {
    throw new BackupError('UnsafePath', `${rel} in the destination is a symlink; restore does not write through symlinks`);
  } else if (!st.isDirectory()) {
    throw new BackupError('Exists', `${rel} exists in the destination and is not a directory`);
  }
}

/** Finds conflicts before any work: a file in the way, a symlink on the way, an existing file. */
async function precheck(root: string, manifest: Manifest, overwrite: boolean): Promise<void> {
  const conflicts: string[] = [];
  for (const e of manifest.entries) {
    await walkParents(root, e.path, false, []);
    const st = await lstatOrNull(inside(root, e.path));
    if (st === null) continue;
    if (e.type === 'directory') {
      await ensureDir(root, e.path, false, []);
    } else if (st.isDirectory()) {
      throw new BackupError('Exists', `${e.path} exists in the destination as a directory`);
    } else if (!overwrite) {
      conflicts.push(e.path);
    }
  }
  if (conflicts.length > 0) {
    const shown = conflicts.slice(0, 5).join(', ') + (conflicts.length > 5 ? `, and ${conflicts.length - 5} more` : '');
    throw new BackupError('Exists', `would overwrite ${shown} (pass overwrite to replace)`);
  }
}

async function writeStaged(path: string, body: AsyncIterable<Uint8Array>): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  try {
    await writeChunks(fh, body);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Places a staged file without replacing anything: link(2) fails if the name exists. */
async function placeNew(tmp: string, dest: string, rel: string): Promise<void> {
  try {
    await link(tmp, dest);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EEXIST') throw new BackupError('Exists', `${rel} appeared in the destination during restore`);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'ENOSYS') throw e;
    // File systems without hard links: check, then rename (a small race, documented).
    if ((await lstatOrNull(dest)) !== null) throw new BackupError('Exists', `${rel} appeared in the destination during restore`);
    await rename(tmp, dest);
  }
}

export async function restoreArchive(
  id: string,
  identity: string,
  store: BackupStore,
  toDir: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const overwrite = options.overwrite ?? false;
  const manifest = await readManifest(id, identity, store);
  await mkdir(toDir, { recursive: true });
  const root = await realpath(toDir);
  await precheck(root, manifest, overwrite);

  const staging = await mkdtemp(join(root, '.bkv-restore-'));
  const stagedFiles = new Map<string, string>();
  try {
    let n = 0;
    await scanArchive(
      manifest,
      identity,
      store,
      async (m, body) => {
        if (m.type === 'directory') {
          for await (const _ of body) {
            /* empty */
          }
          return;
        }
        const tmp = join(staging, String(n++));
        await writeStaged(tmp, body);
        await chmod(tmp, m.mode & 0o777);
        await utimes(tmp, utimeSeconds(m.mtimeMs), utimeSeconds(m.mtimeMs));
        stagedFiles.set(m.path, tmp);
      },
      options,
    );
    checkAborted(options.signal);
    await publish(root, manifest, stagedFiles, overwrite);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  const files = manifest.entries.filter((e) => e.type === 'file').length;
  return { manifest, files, directories: manifest.entries.length - files, bytes: manifest.totalBytes };
}

/** Moves verified files into place; on failure removes what it created. */
async function publish(root: string, manifest: Manifest, staged: Map<string, string>, overwrite: boolean): Promise<void> {
  const created: string[] = [];
  const createdDirs = new Map<string, ManifestEntry>();
  try {
    for (const e of manifest.entries) {
      await walkParents(root, e.path, true, created);
      const dest = inside(root, e.path);
      if (e.type === 'directory') {
        const before = created.length;
        await ensureDir(root, e.path, true, created);
        if (created.length > before) createdDirs.set(dest, e);
        continue;
      }
      const tmp = staged.get(e.path);
      if (tmp === undefined) throw new BackupError('HashMismatch', `${e.path} was not restored`);
      const st = await lstatOrNull(dest);
      if (st?.isDirectory()) throw new BackupError('Exists', `${e.path} exists in the destination as a directory`);
      if (st !== null && overwrite) {
        await rename(tmp, dest); // Replaces a file or a symlink itself, never a symlink's target.
      } else {
        await placeNew(tmp, dest, e.path);
        created.push(dest);
      }
    }
    // Directory modes and times last: adding files changed their mtimes. Deepest first, so a
    // read-only directory does not stop its children from being set.
    const dirs = [...createdDirs.entries()].sort((a, b) => b[0].length - a[0].length);
    for (const [p, e] of dirs) {
      await utimes(p, utimeSeconds(e.mtimeMs), utimeSeconds(e.mtimeMs));
      await chmod(p, e.mode & 0o777);
    }
  } catch (err) {
    for (const p of created.reverse()) {
      await unlink(p).catch(() => rmdir(p).catch(() => undefined));
    }
    throw err;
  }
}

