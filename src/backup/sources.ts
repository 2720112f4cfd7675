/**
 * Turns the paths a user names into archive entries. Each named path becomes a top-level entry
 * under its base name (`~/Documents/photos` -> `photos/...`), so restoring never recreates the
 * machine's absolute layout. Only regular files and directories are archived; symlinks and
 * special files found while walking are skipped and reported, never followed (no loops, no
 * escaping the named tree). A symlink named on the command line is followed: the user chose it.
 */
import { lstat, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { Stats } from 'node:fs';
import { BackupError } from './errors.js';
import type { TarEntryHeader } from './tar-header.js';

export interface SourceEntry {
  readonly header: TarEntryHeader;
  /** File-system path of a file's content. */
  readonly source: string;
}

export interface SkippedPath {
  readonly path: string;
  readonly reason: 'symlink' | 'special';
}

function headerFor(path: string, st: Stats): TarEntryHeader {
  const type = st.isDirectory() ? 'directory' : 'file';
  return { path, type, size: type === 'file' ? st.size : 0, mode: st.mode & 0o7777, mtimeMs: Math.floor(st.mtimeMs) };
}

export async function collectSources(paths: readonly string[]): Promise<{ entries: SourceEntry[]; skipped: SkippedPath[] }> {
  const entries: SourceEntry[] = [];
  const skipped: SkippedPath[] = [];
  const tops = new Set<string>();

  const walk = async (fsPath: string, name: string, st: Stats): Promise<void> => {
    if (st.isSymbolicLink()) return void skipped.push({ path: fsPath, reason: 'symlink' });
    if (!st.isFile() && !st.isDirectory()) return void skipped.push({ path: fsPath, reason: 'special' });
    entries.push({ header: headerFor(name, st), source: fsPath });
    if (!st.isDirectory()) return;
    const children = (await readdir(fsPath)).sort();
    for (const c of children) {
      const p = join(fsPath, c);
      await walk(p, `${name}/${c}`, await lstat(p));
    }
  };

  for (const p of paths) {
    const abs = resolve(p);
    const name = basename(abs);
    if (name === '' || name === '.' || name === '..') throw new BackupError('BadArgument', `cannot archive ${p} under a name`);
    if (tops.has(name)) throw new BackupError('BadArgument', `two paths would both be archived as ${name}`);
    tops.add(name);
    let st: Stats;
    try {
      st = await stat(abs);
    } catch (e) {
      throw new BackupError('NotFound', `cannot read ${p}`, { cause: e });
    }
    await walk(abs, name, st);
  }
  return { entries, skipped };
}
