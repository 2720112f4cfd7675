/**
 * POSIX tar (pax interchange format, POSIX.1-2001) header blocks: a 512-byte ustar header,
 * preceded by a pax extended header ('x') whenever a value does not fit the fixed fields:
 * paths over 100 bytes or not ASCII, sizes of 8 GiB and more, and sub-second or out-of-range
 * mtimes. Regular files and directories only: the archive format carries nothing else.
 */
import { fromUtf8, utf8 } from '../crypto/bytes.js';
import { BackupError } from './errors.js';
import { normalizeEntryPath } from './entry-path.js';

export const BLOCK = 512;

export type TarEntryType = 'file' | 'directory';

export interface TarEntryHeader {
  /** Normalised relative path ("a/b"), without the trailing '/' that directories get in tar. */
  readonly path: string;
  readonly type: TarEntryType;
  /** Bytes of content; 0 for directories. */
  readonly size: number;
  /** Permission bits (0o7777 at most). */
  readonly mode: number;
  /** Modification time in integer milliseconds since the epoch. */
  readonly mtimeMs: number;
}

/** Largest value of an 11-digit octal field: 8 GiB - 1 for sizes. */
const MAX_OCTAL_11 = 0o77777777777;

function writeString(block: Uint8Array, off: number, len: number, s: string): void {
  const b = utf8(s);
  if (b.length > len) throw new Error('tar field overflow');
  block.set(b, off);
}

function writeOctal(block: Uint8Array, off: number, len: number, v: number): void {
  // len-1 octal digits, zero-padded, then NUL.
  writeString(block, off, len, v.toString(8).padStart(len - 1, '0'));
}

function checksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  return sum;
}

function formatMtime(ms: number): string {
  const neg = ms < 0;
  const a = Math.abs(ms);
  const frac = a % 1000;
  const s = `${Math.floor(a / 1000)}` + (frac ? '.' + String(frac).padStart(3, '0').replace(/0+$/, '') : '');
  return (neg ? '-' : '') + s;
}

/** One pax record: "<len> <key>=<value>\n", where len counts the whole record, itself included. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length + bodyLen !== len) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

function ustarBlock(name: string, typeflag: string, size: number, mode: number, mtimeSec: number): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeString(block, 0, 100, name);
  writeOctal(block, 100, 8, mode);
  writeOctal(block, 108, 8, 0); // uid: restore runs as the restoring user
  writeOctal(block, 116, 8, 0); // gid
  writeOctal(block, 124, 12, size);
  writeOctal(block, 136, 12, mtimeSec);
  block[156] = typeflag.charCodeAt(0);
  writeString(block, 257, 6, 'ustar'); // "ustar\0"
  writeString(block, 263, 2, '00');
  writeOctal(block, 148, 7, checksum(block)); // 6 digits + NUL, then a space
  block[155] = 32;
  return block;
}

function padded(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(data.length / BLOCK) * BLOCK);
  out.set(data);
  return out;
}

/** Bytes of padding after `size` bytes of content. */
export function paddingFor(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Encodes the header block(s) for one entry: an optional pax header, then the ustar header. */
export function encodeTarHeader(h: TarEntryHeader): Uint8Array {
  if (h.type === 'directory' && h.size !== 0) throw new BackupError('BadArgument', 'a directory entry has no content');
  if (!Number.isSafeInteger(h.size) || h.size < 0) throw new BackupError('BadArgument', 'invalid tar entry size');
  if (!Number.isSafeInteger(h.mtimeMs)) throw new BackupError('BadArgument', 'invalid tar entry mtime');
  // Write only what the reader accepts, so every archive we write can be restored.
  if (h.path === '' || normalizeEntryPath(h.path) !== h.path) {
    throw new BackupError('BadArgument', 'tar entry paths are relative and normalised');
  }
  const name = h.type === 'directory' ? h.path + '/' : h.path;
  const nameBytes = utf8(name);
  const ascii = nameBytes.every((c) => c >= 32 && c < 127);
  const sec = Math.floor(h.mtimeMs / 1000);
  let pax = '';
  if (nameBytes.length > 100 || !ascii) pax += paxRecord('path', name);
  if (h.size > MAX_OCTAL_11) pax += paxRecord('size', String(h.size));
  if (h.mtimeMs % 1000 !== 0 || sec < 0 || sec > MAX_OCTAL_11) pax += paxRecord('mtime', formatMtime(h.mtimeMs));

  // When pax carries a value, the fixed field holds a stand-in that pax readers ignore: an
  // ASCII-safe truncated name, a clamped mtime, and size 0 for files of 8 GiB and more (the
  // octal field cannot hold them; only pax-aware readers can read such an entry anyway).
  const fixedName = pax.includes(' path=') ? asciiStandIn(name) : name;
  const fixedSize = h.size > MAX_OCTAL_11 ? 0 : h.size;
  const fixedMtime = Math.min(Math.max(sec, 0), MAX_OCTAL_11);
  const main = ustarBlock(fixedName, h.type === 'file' ? '0' : '5', fixedSize, h.mode & 0o7777, fixedMtime);
  if (pax === '') return main;
  const paxData = utf8(pax);
  const paxHead = ustarBlock(asciiStandIn('PaxHeaders/' + h.path.slice(-80)), 'x', paxData.length, 0o644, fixedMtime);
  const out = new Uint8Array(BLOCK + padded(paxData).length + BLOCK);
  out.set(paxHead);
  out.set(paxData, BLOCK);
  out.set(main, out.length - BLOCK);
  return out;
}

function asciiStandIn(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '_').slice(0, 99);
}

// ---- decoding ----

/** The fields of one raw header block, before pax values are applied. */
export interface RawTarHeader {
  readonly name: string;
  readonly typeflag: string;
  readonly size: number;
  readonly mode: number;
  readonly mtimeSec: number;
}

function malformed(msg: string): BackupError {
  return new BackupError('Malformed', `tar: ${msg}`);
}

function fieldBytes(block: Uint8Array, off: number, len: number): Uint8Array {
  const f = block.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul >= 0 ? f.subarray(0, nul) : f;
}

function readString(block: Uint8Array, off: number, len: number): string {
  try {
    return fromUtf8(fieldBytes(block, off, len));
  } catch {
    throw malformed('a name is not UTF-8');
  }
}

/** Octal (optionally space/NUL padded) or GNU base-256 (high bit set) for large values. */
function readNumber(block: Uint8Array, off: number, len: number, what: string): number {
  const first = block[off]!;
  if (first & 0x80) {
    if (first === 0xff) throw malformed(`negative ${what}`);
    let v = first & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + block[off + i]!;
    if (!Number.isSafeInteger(v)) throw malformed(`${what} too large`);
    return v;
  }
  const s = Buffer.from(block.subarray(off, off + len)).toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw malformed(`invalid ${what} field`);
  return parseInt(s, 8);
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (const b of block) if (b !== 0) return false;
  return true;
}

/** Decodes and checks one 512-byte header block. */
export function decodeTarBlock(block: Uint8Array): RawTarHeader {
  if (block.length !== BLOCK) throw malformed('short header block');
  const stored = readNumber(block, 148, 8, 'checksum');
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) signed += i >= 148 && i < 156 ? 32 : (block[i]! << 24) >> 24;
  // Some old writers summed signed chars; both sums are accepted, as GNU tar does.
  if (stored !== checksum(block) && stored !== signed) throw malformed('header checksum mismatch');
  const magic = Buffer.from(block.subarray(257, 265)).toString('latin1');
  if (magic !== 'ustar\x0000' && magic !== 'ustar  \x00') throw malformed('not a ustar header');
  let name = readString(block, 0, 100);
  const prefix = magic === 'ustar\x0000' ? readString(block, 345, 155) : '';
  if (prefix !== '') name = prefix + '/' + name;
  return {
    name,
    typeflag: block[156] === 0 ? '0' : String.fromCharCode(block[156]!),
    size: readNumber(block, 124, 12, 'size'),
    mode: readNumber(block, 100, 8, 'mode') & 0o7777,
    mtimeSec: readNumber(block, 136, 12, 'mtime'),
  };
}

/** The pax values the reader applies; others (atime, uid, SCHILY.*...) carry nothing we restore. */
export interface PaxValues {
  path?: string;
  size?: number;
  mtimeMs?: number;
}

/** Parses pax extended header records. */
export function parsePax(data: Uint8Array): PaxValues {
  const out: PaxValues = {};
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(32, off);
    if (sp < 0 || sp - off > 20) throw malformed('bad pax record length');
    const lenStr = Buffer.from(data.subarray(off, sp)).toString('latin1');
    if (!/^[1-9][0-9]*$/.test(lenStr)) throw malformed('bad pax record length');
    const len = Number(lenStr);
    const end = off + len;
    if (end > data.length || data[end - 1] !== 10) throw malformed('bad pax record');
    let rec: string;
    try {
      rec = fromUtf8(data.subarray(sp + 1, end - 1));
    } catch {
      throw malformed('pax record is not UTF-8');
    }
    const eq = rec.indexOf('=');
    if (eq <= 0) throw malformed('bad pax record');
    const key = rec.slice(0, eq);
    const value = rec.slice(eq + 1);
    if (key === 'path') out.path = value;
    else if (key === 'size') {
      if (!/^[0-9]{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) throw malformed('bad pax size');
      out.size = Number(value);
    } else if (key === 'mtime') {
      const m = /^(-?)([0-9]{1,15})(?:\.([0-9]+))?$/.exec(value);
      if (!m) throw malformed('bad pax mtime');
      const ms = Number(m[2]) * 1000 + Number(((m[3] ?? '') + '000').slice(0, 3));
      out.mtimeMs = m[1] === '-' ? -ms : ms;
    }
    off = end;
  }
  return out;
}
