/**
 * The canonical, length-prefixed encoding used for every MACed, signed or sealed structure
 * (DESIGN section 4, "Domain separation"). A structure starts with its label and is a sequence
 * of fields; variable-length fields carry a 4-byte big-endian length. Decoding is strict: a
 * reader that does not end exactly at the end of its input throws.
 */
import { concatBytes, utf8 } from '../crypto/bytes.js';
import { ProtocolError } from './errors.js';

export class Writer {
  private readonly parts: Uint8Array[] = [];

  /** A label: length-prefixed UTF-8, so that no label is a prefix of another's encoding. */
  label(label: string): this {
    return this.bytes(utf8(label));
  }

  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError('u8 out of range');
    this.parts.push(Uint8Array.of(v));
    return this;
  }

  u16(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError('u16 out of range');
    this.parts.push(Uint8Array.of(v >> 8, v & 0xff));
    return this;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError('u32 out of range');
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    this.parts.push(b);
    return this;
  }

  /** Unsigned 64-bit, from a safe integer. */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError('u64 out of range');
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v));
    this.parts.push(b);
    return this;
  }

  /** Fixed-size field: the length is part of the structure's definition, not the encoding. */
  fixed(b: Uint8Array, length: number): this {
    if (b.length !== length) throw new RangeError(`expected ${length} bytes, got ${b.length}`);
    this.parts.push(b);
    return this;
  }

  /** Variable-length field with a 4-byte length prefix. */
  bytes(b: Uint8Array): this {
    this.u32(b.length);
    this.parts.push(b);
    return this;
  }

  string(s: string): this {
    return this.bytes(utf8(s));
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }

  finish(): Uint8Array {
    return concatBytes(...this.parts);
  }
}

/**
 * Strict UTF-8 that keeps a leading U+FEFF: TextDecoder strips a BOM by default, which would make
 * two byte strings decode to one value (and a user id that starts with U+FEFF unusable, I8).
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class Reader {
  private offset = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly maxField = 1 << 20,
  ) {}

  private take(n: number): Uint8Array {
    if (n < 0 || this.offset + n > this.buf.length) throw new ProtocolError('Malformed', 'truncated input');
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  expectLabel(label: string): this {
    const got = this.bytes();
    const want = utf8(label);
    if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
      throw new ProtocolError('Malformed', 'unexpected structure label');
    }
    return this;
  }

  u8(): number {
    return this.take(1)[0]!;
  }

  u16(): number {
    const b = this.take(2);
    return (b[0]! << 8) | b[1]!;
  }

  u32(): number {
    const b = this.take(4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
  }

  u64(): number {
    const b = this.take(8);
    const v = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError('Malformed', 'integer too large');
    return Number(v);
  }

  fixed(length: number): Uint8Array {
    return this.take(length).slice();
  }

  bytes(max = this.maxField): Uint8Array {
    const n = this.u32();
    if (n > max) throw new ProtocolError('Malformed', 'field too large');
    return this.take(n).slice();
  }

  string(max = this.maxField): string {
    try {
      return strictUtf8.decode(this.bytes(max));
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      throw new ProtocolError('Malformed', 'invalid UTF-8');
    }
  }

  bool(): boolean {
    const v = this.u8();
    if (v > 1) throw new ProtocolError('Malformed', 'invalid boolean');
    return v === 1;
  }

  done(): void {
    if (this.offset !== this.buf.length) throw new ProtocolError('Malformed', 'trailing bytes');
  }
}
