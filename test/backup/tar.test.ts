import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, stat, symlink, writeFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { collect } from '../../src/backup/age-stream.js';
import { BackupError, type BackupErrorCode } from '../../src/backup/errors.js';
import { readTar, writeTar, type TarEntryHeader, type TarWriteEntry } from '../../src/backup/tar.js';
import { encodeTarHeader, paxRecord } from '../../src/backup/tar-header.js';
import { chunks, hasGnuTar, pattern, run, tempDir } from './helpers.js';
import { rawEntry } from './hostile-tar.js';

interface Read {
  header: TarEntryHeader;
  data: Uint8Array;
}

async function readAll(tar: Uint8Array, piece = 4096): Promise<Read[]> {
  const out: Read[] = [];
  for await (const e of readTar(chunks(tar, piece))) out.push({ header: e.header, data: await collect(e.body) });
  return out;
}

async function writeAll(entries: { header: TarEntryHeader; data?: Uint8Array }[]): Promise<Uint8Array> {
  const we: TarWriteEntry[] = entries.map((e) => (e.data ? { header: e.header, body: chunks(e.data, 333) } : { header: e.header }));
  return collect(writeTar(we));
}

async function expectCode(p: Promise<unknown>, code: BackupErrorCode): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BackupError);
  expect((e as BackupError).code).toBe(code);
}

interface Fixture {
  header: TarEntryHeader;
  data?: Uint8Array;
}

const file = (path: string, data: Uint8Array, mtimeMs = 1_700_000_000_000, mode = 0o644): Fixture => ({
  header: { path, type: 'file' as const, size: data.length, mode, mtimeMs },
  data,
});
const dir = (path: string, mtimeMs = 1_700_000_000_000): Fixture => ({ header: { path, type: 'directory' as const, size: 0, mode: 0o755, mtimeMs } });

const END = Buffer.alloc(1024);

describe('tar round trip', () => {
  it('writes and reads back files and directories with long, unicode and odd names', async () => {
    const long = 'd'.repeat(120) + '/' + 'f'.repeat(150) + '.txt';
    const entries = [
      dir('top'),
      file('top/a.txt', pattern(1000)),
      file('top/empty', new Uint8Array(0)),
      file('top/exact', pattern(512)),
      file('top/' + long, pattern(70_000), 1_700_000_000_123),
      file('top/ünïcødé ✓ name', pattern(3)),
      file('top/with\nnewline and spaces', pattern(5), -1500),
      dir('top/sub', 1_600_000_000_500),
    ];
    const tar = await writeAll(entries);
    expect(tar.length % 512).toBe(0);
    const back = await readAll(tar);
    expect(back.map((e) => e.header)).toEqual(entries.map((e) => e.header));
    back.forEach((e, i) => expect(Buffer.from(e.data).equals(Buffer.from(entries[i]!.data ?? new Uint8Array(0)))).toBe(true));
  });

  it('header codec round-trips random entries (property)', async () => {
    const component = fc.stringMatching(/^[^/\0]{1,40}$/).filter((c) => c !== '.' && c !== '..');
    const entry = fc.record({
      path: fc.array(component, { minLength: 1, maxLength: 6 }).map((cs) => cs.join('/')),
      type: fc.constantFrom('file' as const, 'directory' as const),
      size: fc.integer({ min: 0, max: 2000 }),
      mode: fc.integer({ min: 0, max: 0o7777 }),
      mtimeMs: fc.integer({ min: -1e13, max: 1e13 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { maxLength: 5 }), fc.integer({ min: 1, max: 3000 }), async (hs, piece) => {
        const es = hs.map((h) => (h.type === 'directory' ? { header: { ...h, size: 0 } } : { header: h, data: pattern(h.size, h.size + 1) }));
        const back = await readAll(await writeAll(es), piece);
        expect(back.map((e) => e.header)).toEqual(es.map((e) => e.header));
      }),
      { numRuns: 100 },
    );
  });

  it('sizes of 8 GiB and more go in a pax header', async () => {
    const size = 2 ** 33 + 5;
    const h = encodeTarHeader({ path: 'big', type: 'file', size, mode: 0o600, mtimeMs: 0 });
    expect(Buffer.from(h).toString('latin1')).toContain(paxRecord('size', String(size)));
    // The reader hands out the header before reading the body.
    for await (const e of readTar(chunks(Buffer.concat([h, Buffer.alloc(4096)])))) {
      expect(e.header.size).toBe(size);
      break;
    }
    if (hasGnuTar) {
      const r = spawnSync('tar', ['-tvf', '-'], { input: Buffer.concat([h, Buffer.alloc(1024)]) });
      expect(r.stdout.toString()).toContain(String(size));
    }
  });

  it('pax record lengths count their own digits', () => {
    for (let n = 0; n < 300; n++) {
      const r = paxRecord('path', 'x'.repeat(n));
      expect(Buffer.byteLength(r)).toBe(parseInt(r, 10));
    }
  });
});

describe.skipIf(!hasGnuTar)('GNU tar interop', () => {
  let tmp: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => ({ dir: tmp, cleanup } = await tempDir()));
  afterEach(() => cleanup());

  it('GNU tar extracts our archives exactly, long names and sub-second mtimes included', async () => {
    const long = 'L'.repeat(200) + '/' + 'n'.repeat(180);
    const entries = [dir('r'), dir('r/' + 'L'.repeat(200)), file('r/' + long, pattern(12_345), 1_700_000_000_250, 0o640), file('r/ü ✓', pattern(1)), file('r/zero', new Uint8Array(0))];
    await writeFile(join(tmp, 'x.tar'), await writeAll(entries));
    await mkdir(join(tmp, 'out'));
    await run('tar', ['-xf', join(tmp, 'x.tar'), '-C', join(tmp, 'out')]);
    for (const e of entries) {
      const st = await stat(join(tmp, 'out', e.header.path));
      if (e.header.type === 'file') {
        expect(Buffer.from(await readFile(join(tmp, 'out', e.header.path))).equals(Buffer.from(e.data!))).toBe(true);
        expect(st.mode & 0o777).toBe(e.header.mode);
        expect(Math.round(st.mtimeMs)).toBe(e.header.mtimeMs);
      } else {
        expect(st.isDirectory()).toBe(true);
      }
    }
  });

  it.each(['posix', 'gnu', 'ustar'])('we read what GNU tar --format=%s writes', async (format) => {
    const src = join(tmp, 'src');
    const deep = join(src, 'a'.repeat(60), 'b'.repeat(60));
    await mkdir(deep, { recursive: true });
    const name = format === 'ustar' ? 'c'.repeat(90) : 'c'.repeat(150);
    await writeFile(join(deep, name), pattern(100_000));
    await writeFile(join(src, 'small'), 'hi');
    await utimes(join(src, 'small'), 1_600_000_000, 1_600_000_000);
    const tar = await run('tar', [`--format=${format}`, '-cf', '-', '-C', tmp, 'src']);
    const back = await readAll(tar);
    const byPath = new Map(back.map((e) => [e.header.path, e]));
    const big = byPath.get(`src/${'a'.repeat(60)}/${'b'.repeat(60)}/${name}`)!;
    expect(Buffer.from(big.data).equals(Buffer.from(pattern(100_000)))).toBe(true);
    expect(byPath.get('src/small')!.header.mtimeMs).toBe(1_600_000_000_000);
    expect(byPath.get('src')!.header.type).toBe('directory');
  });

  it('GNU tar archives with symlinks or absolute names are refused', async () => {
    await mkdir(join(tmp, 's'));
    await symlink('/etc/passwd', join(tmp, 's', 'link'));
    await expectCode(readAll(await run('tar', ['-cf', '-', '-C', tmp, 's'])), 'UnsupportedEntry');
    await writeFile(join(tmp, 'abs'), 'x');
    await expectCode(readAll(await run('tar', ['-P', '-cf', '-', join(tmp, 'abs')])), 'UnsafePath');
  });
});

describe('hostile tar entries are refused', () => {
  const cases: [string, Buffer, BackupErrorCode][] = [
    ['absolute path', rawEntry('/etc/passwd', '0', Buffer.from('x')), 'UnsafePath'],
    ['.. at the start', rawEntry('../evil', '0', Buffer.from('x')), 'UnsafePath'],
    ['.. in the middle', rawEntry('a/../../evil', '0', Buffer.from('x')), 'UnsafePath'],
    ['.. as the whole name', rawEntry('..', '5'), 'UnsafePath'],
    ['.. through the ustar prefix', rawEntry('evil', '0', Buffer.from('x'), { prefix: '../..' }), 'UnsafePath'],
    ['.. through a pax path', Buffer.concat([rawEntry('PaxHeaders/x', 'x', Buffer.from(paxRecord('path', 'ok/../../evil'))), rawEntry('ok', '0', Buffer.from('x'))]), 'UnsafePath'],
    ['absolute pax path', Buffer.concat([rawEntry('PaxHeaders/x', 'x', Buffer.from(paxRecord('path', '/root/.ssh/authorized_keys'))), rawEntry('ok', '0')]), 'UnsafePath'],
    ['.. through a GNU long name', Buffer.concat([rawEntry('././@LongLink', 'L', Buffer.from('../../evil\0')), rawEntry('ok', '0', Buffer.from('x'), { magic: 'ustar  \0' })]), 'UnsafePath'],
    ['NUL inside a pax path', Buffer.concat([rawEntry('PaxHeaders/x', 'x', Buffer.from(paxRecord('path', 'a\0b'))), rawEntry('ok', '0')]), 'UnsafePath'],
    ['symlink', rawEntry('link', '2', new Uint8Array(0), { link: '/etc' }), 'UnsupportedEntry'],
    ['hard link', rawEntry('link', '1', new Uint8Array(0), { link: '/etc/shadow' }), 'UnsupportedEntry'],
    ['character device', rawEntry('dev', '3'), 'UnsupportedEntry'],
    ['block device', rawEntry('dev', '4'), 'UnsupportedEntry'],
    ['FIFO', rawEntry('fifo', '6'), 'UnsupportedEntry'],
    ['GNU sparse', rawEntry('sparse', 'S', new Uint8Array(0), { magic: 'ustar  \0' }), 'UnsupportedEntry'],
    ['a file named as the root', rawEntry('./', '0'), 'UnsafePath'],
  ];
  it.each(cases)('%s', async (_name, tar, code) => {
    await expectCode(readAll(Buffer.concat([tar, END])), code);
  });

  it('broken structure: bad checksum, no end marker, cut inside an entry, junk after the end', async () => {
    const good = rawEntry('ok', '0', pattern(700));
    const badSum = Buffer.from(good);
    badSum[0] = 0x50;
    await expectCode(readAll(Buffer.concat([badSum, END])), 'Malformed');
    await expectCode(readAll(good), 'Truncated');
    await expectCode(readAll(good.subarray(0, 800)), 'Truncated');
    await expectCode(readAll(Buffer.concat([good, END.subarray(0, 512)])), 'Truncated');
    await expectCode(readAll(Buffer.concat([good, END, Buffer.from('junk')])), 'Malformed');
    await expectCode(readAll(Buffer.concat([rawEntry('PaxHeaders/x', 'x', Buffer.from('9999 path=x\n')), rawEntry('ok', '0'), END])), 'Malformed');
    await expect(readAll(Buffer.concat([good, END, Buffer.alloc(9216)]))).resolves.toHaveLength(1);
  });

  it('random bytes only ever fail with a BackupError (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), async (junk) => {
        await expect(readAll(junk)).rejects.toBeInstanceOf(BackupError);
      }),
      { numRuns: 200 },
    );
    // Mutations of a valid archive: any outcome but a non-BackupError exception or an unsafe path.
    const valid = await writeAll([dir('d'), file('d/f', pattern(600)), file('d/g', pattern(10))]);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: valid.length - 1 }), fc.integer({ min: 1, max: 255 }), async (pos, x) => {
        const bad = Buffer.from(valid);
        bad[pos]! ^= x;
        try {
          for (const e of await readAll(bad)) expect(e.header.path.split('/')).not.toContain('..');
        } catch (err) {
          expect(err).toBeInstanceOf(BackupError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
