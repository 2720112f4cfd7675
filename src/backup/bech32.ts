/**
 * Bech32 (BIP-173), as age uses it for `age1...` recipients and `AGE-SECRET-KEY-1...` identities.
 * Only the original Bech32 checksum constant (1), not Bech32m: age predates Bech32m and keeps it.
 *
 * The 5-bit layer (`bech32Encode`/`bech32Decode`) is what BIP-173's vectors test; the byte layer
 * (`toWords`/`fromWords`) is the strict 8<->5 regrouping: padding bits must be zero and at most
 * four, so every byte string has exactly one encoding.
 */
import { BackupError } from './errors.js';

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const CHARSET_REV = new Int8Array(128).fill(-1);
for (let i = 0; i < CHARSET.length; i++) CHARSET_REV[CHARSET.charCodeAt(i)] = i;

const GENERATORS = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

/** BIP-173's overall length limit; age's keys (74 and 62 characters) fit under it. */
export const BECH32_MAX_LENGTH = 90;

function polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = (((chk & 0x1ffffff) << 5) ^ v) >>> 0;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk = (chk ^ GENERATORS[i]!) >>> 0;
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

function checksum(hrp: string, words: readonly number[]): number[] {
  const mod = polymod([...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  const out: number[] = [];
  for (let i = 0; i < 6; i++) out.push((mod >>> (5 * (5 - i))) & 31);
  return out;
}

function malformed(msg: string): BackupError {
  return new BackupError('Malformed', `bech32: ${msg}`);
}

/** Encodes 5-bit words under a lowercase HRP; the result is lowercase. */
export function bech32Encode(hrp: string, words: readonly number[], limit = BECH32_MAX_LENGTH): string {
  if (hrp.length < 1) throw malformed('empty human-readable part');
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i);
    if (c < 33 || c > 126) throw malformed('human-readable part character out of range');
  }
  if (hrp !== hrp.toLowerCase()) throw malformed('human-readable part must be lowercase');
  for (const w of words) if (!Number.isInteger(w) || w < 0 || w > 31) throw malformed('word out of range');
  if (hrp.length + 1 + words.length + 6 > limit) throw malformed('too long');
  let s = hrp + '1';
  for (const w of [...words, ...checksum(hrp, words)]) s += CHARSET[w]!;
  return s;
}

/**
 * Decodes a Bech32 string. Rejects mixed case, characters outside the charset, a bad checksum,
 * and strings over `limit`. The HRP is returned lowercase.
 */
export function bech32Decode(s: string, limit = BECH32_MAX_LENGTH): { hrp: string; words: number[] } {
  if (s.length > limit) throw malformed('too long');
  let hasLower = false;
  let hasUpper = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 33 || c > 126) throw malformed('character out of range');
    if (c >= 97 && c <= 122) hasLower = true;
    if (c >= 65 && c <= 90) hasUpper = true;
  }
  if (hasLower && hasUpper) throw malformed('mixed case');
  const lower = s.toLowerCase();
  const sep = lower.lastIndexOf('1');
  if (sep < 1) throw malformed('missing separator or empty human-readable part');
  if (lower.length - sep - 1 < 6) throw malformed('checksum too short');
  const hrp = lower.slice(0, sep);
  const words: number[] = [];
  for (let i = sep + 1; i < lower.length; i++) {
    const c = lower.charCodeAt(i);
    const v = c < 128 ? CHARSET_REV[c]! : -1;
    if (v < 0) throw malformed('invalid data character');
    words.push(v);
  }
  if (polymod([...hrpExpand(hrp), ...words]) !== 1) throw malformed('invalid checksum');
  return { hrp, words: words.slice(0, -6) };
}

/** Regroups bytes into 5-bit words, zero-padding the last word. */
export function toWords(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out.push((acc >> bits) & 31);
    }
  }
  if (bits > 0) out.push((acc << (5 - bits)) & 31);
  return out;
}

/** Regroups 5-bit words into bytes; rejects more than 4 padding bits or non-zero padding. */
export function fromWords(words: readonly number[]): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const w of words) {
    if (!Number.isInteger(w) || w < 0 || w > 31) throw malformed('word out of range');
    acc = ((acc << 5) | w) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 255);
    }
  }
  if (bits >= 5) throw malformed('excess padding');
  if ((acc & ((1 << bits) - 1)) !== 0) throw malformed('non-zero padding');
  return Uint8Array.from(out);
}
