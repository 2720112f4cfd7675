/**
 * Backup stores: where encrypted archives live. The store is untrusted (DESIGN section 3): it
 * sees only age ciphertext and the clear archive summaries, and anything it returns is
 * authenticated by age and checked against the encrypted manifest before it is believed.
 *
 * Writes are two-phase so that a crash never leaves a half-written object visible: `stage`
 * streams the body somewhere `list` and `get` do not look, and `commit` publishes it atomically.
 * This maps directly onto S3-compatible stores (stage = multipart upload, commit =
 * CompleteMultipartUpload, discard = AbortMultipartUpload) as well as onto rename(2) here.
 */
import { createReadStream, type Dirent } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BackupError } from './errors.js';
import { writeChunks } from './file-write.js';

export interface StoredObject {
  readonly name: string;
  readonly size: number;
}

/** An object written but not yet visible. Exactly one of commit or discard should be called. */
export interface StagedObject {
  readonly name: string;
  readonly size: number;
  /** Makes the object visible under its name, atomically, replacing any object of that name. */
  commit(): Promise<void>;
  /** Forgets the staged data. Safe to call after a failed commit. */
  discard(): Promise<void>;
}

export interface BackupStore {
  /**
   * Streams `body` to a staging area. If `body` throws, the partial data is removed and the error
   * rethrown. Names match OBJECT_NAME.
   */
  stage(name: string, body: AsyncIterable<Uint8Array>): Promise<StagedObject>;
  /** The object's content; `NotFound` if there is none. */
  get(name: string): Promise<AsyncIterable<Uint8Array>>;
  /** Committed objects only, in name order. */
  list(): Promise<StoredObject[]>;
  /** Removes an object; removing a missing one is not an error. */
  delete(name: string): Promise<void>;
}

/** Object names: what survives as a file name and an S3 key unchanged, with no path syntax. */
export const OBJECT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export function checkObjectName(name: string): void {
  if (!OBJECT_NAME.test(name)) throw new BackupError('BadArgument', `invalid store object name ${JSON.stringify(name.slice(0, 100))}`);
}

/** Staging files start with '.', which OBJECT_NAME never does, so they cannot be listed or fetched. */
const STAGING_PREFIX = '.staging-';

/** A store in one local directory; objects are files, staged under hidden temporary names. */
export class DirectoryStore implements BackupStore {
  constructor(readonly dir: string) {}

  private async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async stage(name: string, body: AsyncIterable<Uint8Array>): Promise<StagedObject> {
    checkObjectName(name);
    await this.ensureDir();
    const tmp = join(this.dir, `${STAGING_PREFIX}${randomBytes(8).toString('hex')}-${name}`);
    const fh = await open(tmp, 'wx', 0o600);
    let size: number;
    try {
      size = await writeChunks(fh, body);
      // Durable before visible: after commit's rename the data must survive a power cut.
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fh.close();
    const final = join(this.dir, name);
    const dir = this.dir;
    return {
      name,
      size,
      async commit() {
        await rename(tmp, final);
        await syncDir(dir);
      },
      async discard() {
        await rm(tmp, { force: true });
      },
    };
  }

  async get(name: string): Promise<AsyncIterable<Uint8Array>> {
    checkObjectName(name);
    const path = join(this.dir, name);
    try {
      const st = await stat(path);
      if (!st.isFile()) throw new BackupError('NotFound', `no object ${name} in the store`);
    } catch (e) {
      if (isNoEntry(e)) throw new BackupError('NotFound', `no object ${name} in the store`);
      throw e;
    }
    return createReadStream(path, { highWaterMark: 1 << 20 });
  }

  async list(): Promise<StoredObject[]> {
    let entries: Dirent[];
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch (e) {
      if (isNoEntry(e)) return [];
      throw e;
    }
    const out: StoredObject[] = [];
    for (const d of entries) {
      if (!d.isFile() || !OBJECT_NAME.test(d.name)) continue;
      const st = await lstat(join(this.dir, d.name)).catch(() => null);
      if (st?.isFile()) out.push({ name: d.name, size: st.size });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<void> {
    checkObjectName(name);
    await rm(join(this.dir, name), { force: true });
  }

  /**
   * Removes staging files left by crashed writers, older than `olderThanMs` so that a write in
   * progress in another process is not cut from under it.
   */
  async sweepStaging(olderThanMs: number, now = Date.now()): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if (isNoEntry(e)) return 0;
      throw e;
    }
    let removed = 0;
    for (const n of names) {
      if (!n.startsWith(STAGING_PREFIX)) continue;
      const st = await lstat(join(this.dir, n)).catch(() => null);
      if (st && now - st.mtimeMs >= olderThanMs) {
        await rm(join(this.dir, n), { force: true });
        removed++;
      }
    }
    return removed;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function isNoEntry(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ENOENT';
}
