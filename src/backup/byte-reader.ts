/**
 * Pull-based reads of exact byte counts from an async stream of chunks, for the age and tar
 * parsers. Only what a caller asks for is buffered (at most one read's worth plus the tail of the
 * last source chunk), so memory stays flat however large the stream is.
 */
import { BackupError } from './errors.js';

export class ByteReader {
  private readonly chunks: Uint8Array[] = [];
  /** Offset into chunks[0] of the first unread byte. */
  private head = 0;
  private buffered = 0;
  private ended = false;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Pulls source chunks until `n` bytes are buffered or the source ends. */
  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      if (r.value.length === 0) continue;
      this.chunks.push(r.value);
      this.buffered += r.value.length;
    }
  }

  /** Takes up to `n` bytes from the buffer; zero-copy when they sit in one chunk. */
  private take(n: number): Uint8Array {
    const want = Math.min(n, this.buffered);
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= want) {
      const out = first.subarray(this.head, this.head + want);
      this.advance(want);
      return out;
    }
    const out = new Uint8Array(want);
    let o = 0;
    while (o < want) {
      const c = this.chunks[0]!;
      const k = Math.min(want - o, c.length - this.head);
      out.set(c.subarray(this.head, this.head + k), o);
      o += k;
      this.advance(k);
    }
    return out;
  }

  private advance(k: number): void {
    this.head += k;
    this.buffered -= k;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** Reads `n` bytes, or fewer only if the stream ends first. */
  async read(n: number): Promise<Uint8Array> {
    await this.fill(n);
    return this.take(n);
  }

  /** Reads exactly `n` bytes; a shorter stream is `Truncated` (`what` names the structure). */
  async readExact(n: number, what: string): Promise<Uint8Array> {
    const b = await this.read(n);
    if (b.length !== n) throw new BackupError('Truncated', `input ends inside ${what}`);
    return b;
  }

  /** Reads between 1 and `max` bytes, whatever is cheapest; empty only at the end of the stream. */
  async readSome(max: number): Promise<Uint8Array> {
    await this.fill(1);
    const first = this.chunks[0];
    if (first === undefined) return new Uint8Array(0);
    return this.take(Math.min(max, first.length - this.head));
  }

  /**
   * Reads one line up to and including '\n' (returned without it). Throws `Malformed` if no
   * newline comes within `max` bytes and `Truncated` if the stream ends first.
   */
  async readLine(max: number, what: string): Promise<Uint8Array> {
    for (;;) {
      // Lines are short (bounded by `max`), so rescanning the buffer on each pull is cheap.
      let pos = 0;
      for (let ci = 0; ci < this.chunks.length; ci++) {
        const c = this.chunks[ci]!;
        const start = ci === 0 ? this.head : 0;
        const idx = c.indexOf(10, start);
        if (idx >= 0) {
          const found = pos + (idx - start);
          if (found > max) break;
          return this.take(found + 1).subarray(0, found);
        }
        pos += c.length - start;
        if (pos > max) break;
      }
      if (this.buffered > max) throw new BackupError('Malformed', `${what}: line too long`);
      if (this.ended) throw new BackupError('Truncated', `input ends inside ${what}`);
      await this.fill(this.buffered + 1);
    }
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffered === 0;
  }

  /** Stops the source early (releases file handles when a parser fails). */
  async close(): Promise<void> {
    this.chunks.length = 0;
    this.buffered = 0;
    if (!this.ended) {
      this.ended = true;
      await this.it.return?.();
    }
  }
}
