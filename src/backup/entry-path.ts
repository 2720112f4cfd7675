/**
 * Archive entry paths. Inside an archive a path is relative, '/'-separated, and never climbs:
 * no leading '/', no '..' component, no NUL. The reader normalises and checks every name with
 * `normalizeEntryPath` before anything else sees it, so a hostile archive cannot name a place
 * outside the restore directory (restore re-checks against the file system, see restore.ts).
 *
 * Names are POSIX names: "C:" and "a\b" are ordinary file names on Linux, so refusing them here
 * would make some honest backups unrestorable. On Windows, where they would be a drive or a
 * separator, restore's resolved-path check (restore.ts `inside`) refuses them instead.
 */
import { BackupError } from './errors.js';

/** Longest accepted entry path in bytes (Linux PATH_MAX). */
export const MAX_ENTRY_PATH = 4096;

/**
 * Returns the canonical form of `raw` ("a/b/c": no "." or empty components, no trailing '/'),
 * or '' for the archive root ("./"). Throws `UnsafePath` for anything that could escape.
 */
export function normalizeEntryPath(raw: string): string {
  if (raw.includes('\0')) throw unsafe(raw, 'contains NUL');
  if (Buffer.byteLength(raw) > MAX_ENTRY_PATH) throw unsafe(raw, 'too long');
  if (raw.startsWith('/')) throw unsafe(raw, 'is absolute');
  const out: string[] = [];
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw unsafe(raw, "has a '..' component");
    out.push(c);
  }
  return out.join('/');
}

function unsafe(raw: string, why: string): BackupError {
  return new BackupError('UnsafePath', `archive entry ${JSON.stringify(raw.slice(0, 200))} ${why}`);
}
