/** Hand-built tar streams for hostile-input tests, independent of the codec under test. */

function octal(v: number, len: number): string {
  return v.toString(8).padStart(len - 1, '0') + '\0';
}

/** A ustar header block; `opts` can set a link target, a prefix, or GNU magic. */
export function rawBlock(name: string, typeflag: string, size: number, opts: { link?: string; prefix?: string; magic?: string } = {}): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 100, 'utf8');
  b.write(octal(0o644, 8), 100, 'latin1');
  b.write(octal(0, 8), 108, 'latin1');
  b.write(octal(0, 8), 116, 'latin1');
  b.write(octal(size, 12), 124, 'latin1');
  b.write(octal(1_700_000_000, 12), 136, 'latin1');
  b.write(typeflag, 156, 'latin1');
  if (opts.link) b.write(opts.link, 157, 100, 'utf8');
  b.write(opts.magic ?? 'ustar\x0000', 257, 'latin1');
  if (opts.prefix) b.write(opts.prefix, 345, 155, 'utf8');
  b.fill(' ', 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(octal(sum, 7), 148, 'latin1');
  return b;
}

export function rawEntry(name: string, typeflag: string, data: Uint8Array = new Uint8Array(0), opts = {}): Buffer {
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([rawBlock(name, typeflag, data.length, opts), data, pad]);
}

/** A whole archive of [name, typeflag, content] entries with its end marker. */
export function rawTar(entries: readonly (readonly [string, string, string])[]): Buffer {
  return Buffer.concat([...entries.map(([n, t, d]) => rawEntry(n, t, Buffer.from(d))), Buffer.alloc(1024)]);
}
