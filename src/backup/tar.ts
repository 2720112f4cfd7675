/**
 * Streaming tar writer and reader for the archive format (see tar-header.ts for the blocks).
 *
 * The reader is the trust boundary for archive contents: it refuses every entry type but
 * regular files and directories (symlinks and hard links are how tar extraction escapes its
 * destination), normalises and checks every path (entry-path.ts), bounds metadata sizes, and
 * insists on the end-of-archive marker so a cut-short stream is never taken as complete.
 */
import { ByteReader } from './byte-reader.js';
import { BackupError } from './errors.js';
import { normalizeEntryPath } from './entry-path.js';
import {
  BLOCK,
  decodeTarBlock,
  encodeTarHeader,
  isZeroBlock,
  paddingFor,
  parsePax,
  type PaxValues,
  type TarEntryHeader,
} from './tar-header.js';

export type { TarEntryHeader, TarEntryType } from './tar-header.js';

export interface TarWriteEntry {
  readonly header: TarEntryHeader;
  /** Exactly `header.size` bytes; omitted for directories and empty files. */
  readonly body?: AsyncIterable<Uint8Array>;
}

const END_OF_ARCHIVE = new Uint8Array(2 * BLOCK);
const ZERO_PAD = new Uint8Array(BLOCK);
/** Bound on metadata entries (pax, GNU long names): honest ones are a few hundred bytes. */
const MAX_META = 1024 * 1024;

/** Writes entries as a tar stream ending with the two-zero-block end marker. */
export async function* writeTar(
  entries: AsyncIterable<TarWriteEntry> | Iterable<TarWriteEntry>,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const e of entries) {
    yield encodeTarHeader(e.header);
    let written = 0;
    if (e.body) {
      for await (const piece of e.body) {
        written += piece.length;
        // The header already promised the size; a longer body would corrupt every later entry.
        if (written > e.header.size) throw new BackupError('FileChanged', `${e.header.path}: more content than its size`);
        if (piece.length > 0) yield piece;
      }
    }
    if (written !== e.header.size) throw new BackupError('FileChanged', `${e.header.path}: less content than its size`);
    const pad = paddingFor(written);
    if (pad > 0) yield ZERO_PAD.subarray(0, pad);
  }
  yield END_OF_ARCHIVE;
}

export interface TarReadEntry {
  readonly header: TarEntryHeader;
  /** The content. Valid only until the next entry is requested; unread content is skipped. */
  readonly body: AsyncIterable<Uint8Array>;
}

async function readMeta(reader: ByteReader, size: number): Promise<Uint8Array> {
  if (size > MAX_META) throw new BackupError('Malformed', 'tar: metadata entry too large');
  const data = await reader.readExact(size, 'a tar metadata entry');
  await reader.readExact(paddingFor(size), 'tar padding');
  return new Uint8Array(data);
}

async function skip(reader: ByteReader, n: number): Promise<void> {
  while (n > 0) {
    const got = await reader.readSome(Math.min(n, 1 << 20));
    if (got.length === 0) throw new BackupError('Truncated', 'input ends inside a tar entry');
    n -= got.length;
  }
}

/** Reads the next entry's header (applying pax and GNU long-name entries), or null at the end. */
async function readEntryHeader(reader: ByteReader): Promise<TarEntryHeader | null> {
  let pax: PaxValues = {};
  let longName: string | undefined;
  for (;;) {
    const block = await reader.readExact(BLOCK, 'a tar header (no end-of-archive marker)');
    if (isZeroBlock(block)) {
      const second = await reader.readExact(BLOCK, 'the tar end-of-archive marker');
      if (!isZeroBlock(second)) throw new BackupError('Malformed', 'tar: lone zero block');
      if (longName !== undefined || Object.keys(pax).length > 0) throw new BackupError('Malformed', 'tar: metadata without an entry');
      return null;
    }
    const raw = decodeTarBlock(block);
    switch (raw.typeflag) {
      case 'x':
        pax = { ...pax, ...parsePax(await readMeta(reader, raw.size)) };
        continue;
      case 'g':
        // Global pax headers set defaults for every later entry; none of their keys affects what
        // we restore (a global 'path' is meaningless), so they are read and dropped.
        await readMeta(reader, raw.size);
        continue;
      case 'L': {
        const data = await readMeta(reader, raw.size);
        const nul = data.indexOf(0);
        longName = Buffer.from(nul >= 0 ? data.subarray(0, nul) : data).toString('utf8');
        continue;
      }
      case '0':
      case '7':
      case '5':
        break;
      default:
        throw new BackupError('UnsupportedEntry', `tar: entry type '${raw.typeflag}' (${describeType(raw.typeflag)}) is not allowed in a backup archive`);
    }
    const type = raw.typeflag === '5' ? 'directory' : 'file';
    const rawPath = pax.path ?? longName ?? raw.name;
    const size = pax.size ?? raw.size;
    if (type === 'directory' && size !== 0) throw new BackupError('Malformed', 'tar: directory entry with content');
    const path = normalizeEntryPath(rawPath);
    if (path === '') {
      if (type === 'directory') {
        // "./": the archive root itself, which is the destination; nothing to create.
        pax = {};
        longName = undefined;
        continue;
      }
      throw new BackupError('UnsafePath', 'tar: a file entry names the archive root');
    }
    return { path, type, size, mode: raw.mode, mtimeMs: pax.mtimeMs ?? raw.mtimeSec * 1000 };
  }
}

function describeType(t: string): string {
  const names: Record<string, string> = {
    '1': 'hard link', '2': 'symbolic link', '3': 'character device', '4': 'block device', '6': 'FIFO',
    K: 'GNU long link name', S: 'GNU sparse file', D: 'GNU dump directory', M: 'GNU multi-volume', V: 'GNU volume label',
  };
  return names[t] ?? 'unknown';
}

/**
 * Reads a tar stream entry by entry. After the end marker the rest of the stream must be zero
 * padding (GNU tar pads to 10 KiB records); it is read to the end so an enclosing authenticated
 * stream (age) gets to verify its final chunk.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarReadEntry, void, undefined> {
  const reader = new ByteReader(source);
  try {
    for (;;) {
      const header = await readEntryHeader(reader);
      if (header === null) break;
      let remaining = header.size;
      const body = (async function* () {
        while (remaining > 0) {
          const piece = await reader.readSome(Math.min(remaining, 1 << 20));
          if (piece.length === 0) throw new BackupError('Truncated', 'input ends inside a tar entry');
          remaining -= piece.length;
          yield piece;
        }
      })();
      yield { header, body };
      await skip(reader, remaining);
      remaining = 0;
      await reader.readExact(paddingFor(header.size), 'tar padding');
    }
    for (;;) {
      const rest = await reader.readSome(1 << 20);
      if (rest.length === 0) break;
      if (!isZeroBlock(rest)) throw new BackupError('Malformed', 'tar: data after the end-of-archive marker');
    }
  } finally {
    await reader.close();
  }
}
