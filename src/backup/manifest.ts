/**
 * Per-archive metadata, in two objects beside `<id>.age`:
 *
 * - `<id>.manifest.age`: the full manifest, age-encrypted to the archive's recipient. It lists
 *   every path with its size and SHA-256, so it is as private as the files: names alone say a
 *   lot (a folder per client, a file per diagnosis). Restore and verify trust only this copy.
 * - `<id>.manifest.json`: the clear summary (id, creation time, key mode, ciphertext size), all
 *   of which the untrusted store sees or can infer anyway. It lets `list` work without the key
 *   and tells the CLI whether to ask for the vault password or the recovery code. It is written
 *   last, so its presence marks a complete archive.
 *
 * The encrypted manifest also names its archive id and the ciphertext's size, so a store that
 * swaps objects between archives is caught with a clear error (per-file hashes catch the rest).
 */
import { fromUtf8 } from '../crypto/bytes.js';
import { BackupError } from './errors.js';
import type { TarEntryType } from './tar-header.js';
import { normalizeEntryPath } from './entry-path.js';

export type KeyMode = 'vault' | 'recovery-code';
export const MANIFEST_FORMAT = 'bkv-backup-manifest/v1';
export const SUMMARY_FORMAT = 'bkv-backup/v1';

export interface ManifestEntry {
  readonly path: string;
  readonly type: TarEntryType;
  /** Content bytes; 0 for directories. */
  readonly size: number;
  /** Lowercase hex SHA-256 of the content; absent for directories. */
  readonly sha256?: string;
  readonly mode: number;
  readonly mtimeMs: number;
}

export interface Manifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly id: string;
  readonly createdAt: string;
  readonly keyMode: KeyMode;
  /** Sum of file sizes: the plaintext bytes restore writes. */
  readonly totalBytes: number;
  /** Size of `<id>.age`, so a swapped or cut archive is named as such. */
  readonly archiveBytes: number;
  readonly entries: readonly ManifestEntry[];
}

export interface ArchiveSummary {
  readonly format: typeof SUMMARY_FORMAT;
  readonly id: string;
  readonly createdAt: string;
  readonly keyMode: KeyMode;
  /** Size of `<id>.age` (ciphertext). */
  readonly archiveBytes: number;
}

/** Archive ids sort by creation time: "20250102T030405Z-" then 16 random hex digits. */
export const ARCHIVE_ID = /^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{16}$/;

export function newArchiveId(now: Date, randomHex: string): string {
  const iso = now.toISOString().replace(/[-:]/g, '').replace(/\.[0-9]{3}/, '');
  return `${iso}-${randomHex}`;
}

export function checkArchiveId(id: string): void {
  if (!ARCHIVE_ID.test(id)) throw new BackupError('BadArgument', `invalid archive id ${JSON.stringify(id.slice(0, 80))}`);
}

export const archiveObject = (id: string): string => `${id}.age`;
export const manifestObject = (id: string): string => `${id}.manifest.age`;
export const summaryObject = (id: string): string => `${id}.manifest.json`;

// ---- strict decoding: the manifest comes from the store, so it is input like any other ----

type Json = Record<string, unknown>;

function bad(what: string): BackupError {
  return new BackupError('Malformed', `manifest: ${what}`);
}

function parseJsonObject(bytes: Uint8Array, what: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(fromUtf8(bytes));
  } catch {
    throw bad(`${what} is not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} is not an object`);
  return v as Json;
}

function str(o: Json, k: string, re?: RegExp): string {
  const v = o[k];
  if (typeof v !== 'string' || (re && !re.test(v))) throw bad(`invalid ${k}`);
  return v;
}

function int(o: Json, k: string, min = 0): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`invalid ${k}`);
  return v;
}

function keyMode(o: Json): KeyMode {
  const v = o.keyMode;
  if (v !== 'vault' && v !== 'recovery-code') throw bad('invalid keyMode');
  return v;
}

const ISO_TIME = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z$/;
const HEX64 = /^[0-9a-f]{64}$/;

function parseEntry(v: unknown): ManifestEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('invalid entry');
  const o = v as Json;
  const path = str(o, 'path');
  if (normalizeEntryPath(path) !== path || path === '') throw bad('entry path is not normalised');
  const type = o.type;
  const mode = int(o, 'mode');
  if (mode > 0o7777) throw bad('invalid mode');
  const mtimeMs = int(o, 'mtimeMs', Number.MIN_SAFE_INTEGER);
  if (type === 'directory') return { path, type, size: 0, mode, mtimeMs };
  if (type === 'file') return { path, type, size: int(o, 'size'), sha256: str(o, 'sha256', HEX64), mode, mtimeMs };
  throw bad('invalid entry type');
}

export function parseManifest(bytes: Uint8Array): Manifest {
  const o = parseJsonObject(bytes, 'manifest');
  if (o.format !== MANIFEST_FORMAT) throw new BackupError('UnknownFormat', 'manifest: unknown format');
  if (!Array.isArray(o.entries)) throw bad('invalid entries');
  const entries = o.entries.map(parseEntry);
  const seen = new Set<string>();
  let total = 0;
  for (const e of entries) {
    if (seen.has(e.path)) throw bad(`duplicate path ${e.path}`);
    seen.add(e.path);
    total += e.size;
  }
  const m: Manifest = {
    format: MANIFEST_FORMAT,
    id: str(o, 'id', ARCHIVE_ID),
    createdAt: str(o, 'createdAt', ISO_TIME),
    keyMode: keyMode(o),
    totalBytes: int(o, 'totalBytes'),
    archiveBytes: int(o, 'archiveBytes'),
    entries,
  };
  if (m.totalBytes !== total) throw bad('totalBytes differs from the sum of the entries');
  return m;
}

export function parseSummary(bytes: Uint8Array): ArchiveSummary {
  const o = parseJsonObject(bytes, 'summary');
  if (o.format !== SUMMARY_FORMAT) throw new BackupError('UnknownFormat', 'archive summary: unknown format');
  return {
    format: SUMMARY_FORMAT,
    id: str(o, 'id', ARCHIVE_ID),
    createdAt: str(o, 'createdAt', ISO_TIME),
    keyMode: keyMode(o),
    archiveBytes: int(o, 'archiveBytes'),
  };
}
