/**
 * The age-encryption.org/v1 header: a version line, stanzas, and a MAC line.
 *
 *   age-encryption.org/v1
 *   -> <type> <arg>...        (each argument non-empty, printable ASCII without spaces)
 *   <body, base64 without padding, 64 columns; the last line is shorter, possibly empty>
 *   --- <base64 HMAC-SHA256 of everything up to and including "---">
 *
 * Parsing is strict (canonical base64, exact line shapes) because the MAC covers the bytes as
 * written: accepting two spellings of one header would let a tamperer change a file undetected
 * only if a parser normalised them, and strictness removes the question.
 */
import { fromBase64, fromUtf8, toBase64, utf8 } from '../crypto/bytes.js';
import type { ByteReader } from './byte-reader.js';
import { BackupError } from './errors.js';

export const AGE_VERSION_LINE = 'age-encryption.org/v1';
const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';
const BODY_COLUMNS = 64;
/** Bounds on hostile headers: no honest header comes near them (an X25519 stanza is ~100 bytes). */
const MAX_LINE = 4096;
const MAX_HEADER = 64 * 1024;
const MAX_STANZAS = 256;

export interface Stanza {
  /** The first argument, e.g. "X25519". */
  readonly type: string;
  /** The remaining arguments. */
  readonly args: readonly string[];
  readonly body: Uint8Array;
}

export interface AgeHeader {
  readonly stanzas: readonly Stanza[];
  /** The header bytes the MAC covers: from the version line up to and including "---". */
  readonly macInput: Uint8Array;
  readonly mac: Uint8Array;
}

/** Unpadded standard base64, as age writes it. */
export function toBase64NoPad(b: Uint8Array): string {
  return toBase64(b).replace(/=+$/, '');
}

/** Strict unpadded base64: rejects '=', other alphabets and non-zero trailing bits. */
export function fromBase64NoPad(s: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) throw new TypeError('invalid base64');
  return fromBase64(s + '='.repeat((4 - (s.length % 4)) % 4));
}

function isArg(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

function malformed(msg: string): BackupError {
  return new BackupError('Malformed', `age header: ${msg}`);
}

/** Everything the MAC covers: version line, stanzas, and "---". */
export function encodeHeaderWithoutMac(stanzas: readonly Stanza[]): Uint8Array {
  let s = AGE_VERSION_LINE + '\n';
  for (const st of stanzas) {
    const args = [st.type, ...st.args];
    if (!args.every(isArg)) throw new BackupError('BadArgument', 'age stanza arguments must be printable ASCII without spaces');
    s += '-> ' + args.join(' ') + '\n';
    const b64 = toBase64NoPad(st.body);
    // Full 64-column lines, then a shorter final line (empty when the body fills its lines).
    let i = 0;
    for (; i + BODY_COLUMNS <= b64.length; i += BODY_COLUMNS) s += b64.slice(i, i + BODY_COLUMNS) + '\n';
    s += b64.slice(i) + '\n';
  }
  return utf8(s + '---');
}

export function encodeHeader(stanzas: readonly Stanza[], mac: Uint8Array): Uint8Array {
  const head = encodeHeaderWithoutMac(stanzas);
  const tail = utf8(' ' + toBase64NoPad(mac) + '\n');
  const out = new Uint8Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}

function decodeLine(b: Uint8Array): string {
  for (const c of b) if (c < 32 || c > 126) throw malformed('non-printable byte');
  return fromUtf8(b);
}

/**
 * Reads the header from `reader`, leaving it positioned at the payload. The version line decides
 * the format: anything but age v1 is `UnknownFormat`, so callers can say "not an age file"
 * rather than "corrupted".
 */
export async function readHeader(reader: ByteReader): Promise<AgeHeader> {
  const parts: Uint8Array[] = [];
  let total = 0;
  const nextLine = async (): Promise<string> => {
    const raw = await reader.readLine(MAX_LINE, 'the age header');
    total += raw.length + 1;
    if (total > MAX_HEADER) throw malformed('header too large');
    parts.push(raw);
    return decodeLine(raw);
  };

  let first: Uint8Array;
  try {
    first = await reader.readLine(AGE_VERSION_LINE.length + 64, 'the age version line');
  } catch (e) {
    // No short first line at all: empty input, or binary that is not an age file.
    throw new BackupError('UnknownFormat', 'not an age file', { cause: e });
  }
  const version = Buffer.from(first).toString('latin1');
  if (version !== AGE_VERSION_LINE) {
    if (version.trimEnd() === ARMOR_BEGIN) {
      throw new BackupError('UnknownFormat', 'armored (PEM) age files are not accepted; decode the armor first');
    }
    if (version.startsWith('age-encryption.org/')) throw new BackupError('UnknownFormat', 'unsupported age version');
    throw new BackupError('UnknownFormat', 'not an age file');
  }
  parts.push(first);
  total = first.length + 1;

  const stanzas: Stanza[] = [];
  let line = await nextLine();
  for (;;) {
    if (line.startsWith('--- ')) break;
    if (!line.startsWith('-> ')) throw malformed('expected a stanza or the MAC line');
    if (stanzas.length >= MAX_STANZAS) throw malformed('too many stanzas');
    const args = line.slice(3).split(' ');
    if (!args.every(isArg)) throw malformed('empty or invalid stanza argument');
    const bodyParts: Uint8Array[] = [];
    for (;;) {
      const b = await nextLine();
      if (b.length > BODY_COLUMNS) throw malformed('stanza body line too long');
      try {
        bodyParts.push(fromBase64NoPad(b));
      } catch {
        throw malformed('stanza body is not canonical base64');
      }
      if (b.length < BODY_COLUMNS) break;
    }
    const [type, ...rest] = args as [string, ...string[]];
    stanzas.push({ type, args: rest, body: Buffer.concat(bodyParts) });
    line = await nextLine();
  }

  const macB64 = line.slice(4);
  let mac: Uint8Array;
  try {
    mac = fromBase64NoPad(macB64);
  } catch {
    throw malformed('MAC is not canonical base64');
  }
  if (mac.length !== 32) throw malformed('MAC has the wrong length');
  // The MAC covers every line before the MAC line, joined by '\n', plus "\n---".
  const header = Buffer.concat(parts.flatMap((p) => [p, Buffer.from('\n')]));
  const macInput = header.subarray(0, header.length - 1 - macB64.length - 1);
  return { stanzas, macInput: new Uint8Array(macInput), mac };
}
