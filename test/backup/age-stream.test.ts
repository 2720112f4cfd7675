import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as age from 'age-encryption';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deriveAgeKeyPair } from '../../src/backup/age-key.js';
import { collect, decryptAge, encryptAge, payloadKey, sealChunk, sealHeader, CHUNK_SIZE } from '../../src/backup/age-stream.js';
import { encodeHeader, readHeader, type Stanza } from '../../src/backup/age-header.js';
import { wrapX25519 } from '../../src/backup/age-x25519.js';
import { ByteReader } from '../../src/backup/byte-reader.js';
import { BackupError, type BackupErrorCode } from '../../src/backup/errors.js';
import { parseRecipient } from '../../src/backup/age-key.js';
import { utf8 } from '../../src/crypto/bytes.js';
import { chunks, hasAgeCli, pattern, run, seededRandom, tempDir } from './helpers.js';

const KP = deriveAgeKeyPair(new Uint8Array(32).fill(1));
const OTHER = deriveAgeKeyPair(new Uint8Array(32).fill(2));
const SIZES = [0, 1, 1000, 65535, 65536, 65537, 3 * 65536];

const encrypt = (pt: Uint8Array, opts = {}) => collect(encryptAge(chunks(pt, 7777), KP.recipient, opts));
const decrypt = (ct: Uint8Array, identity = KP.identity) => collect(decryptAge(chunks(ct, 5000), identity));

async function expectCode(p: Promise<unknown>, code: BackupErrorCode, message?: RegExp): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, `expected ${code}`).toBeInstanceOf(BackupError);
  expect((e as BackupError).code).toBe(code);
  if (message) expect((e as BackupError).message).toMatch(message);
}

async function libDecrypt(ct: Uint8Array, identity = KP.identity): Promise<Uint8Array> {
  const d = new age.Decrypter();
  d.addIdentity(identity);
  return d.decrypt(ct);
}

describe('age interop with the age-encryption library', () => {
  it.each(SIZES)('our %i-byte file decrypts with the library, and the library\'s with ours', async (n) => {
    const pt = pattern(n, n + 1);
    expect(Buffer.from(await libDecrypt(await encrypt(pt))).equals(Buffer.from(pt))).toBe(true);
    const e = new age.Encrypter();
    e.addRecipient(KP.recipient);
    expect(Buffer.from(await decrypt(await e.encrypt(pt))).equals(Buffer.from(pt))).toBe(true);
  });

  it('ciphertext size is header + 16 + plaintext + 16 per 64 KiB chunk', async () => {
    for (const n of SIZES) {
      const ct = await encrypt(pattern(n));
      const header = (await readHeaderOf(ct)).length;
      const chunkCount = Math.max(1, Math.ceil(n / CHUNK_SIZE));
      expect(ct.length).toBe(header + 16 + n + 16 * chunkCount);
    }
  });

  it('output does not depend on how the input is chunked (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 200_000 }), fc.integer({ min: 1, max: 70_000 }), async (n, piece) => {
        const pt = pattern(n, 3);
        const a = await collect(encryptAge(chunks(pt, piece), KP.recipient, { random: seededRandom(9) }));
        const b = await collect(encryptAge([pt], KP.recipient, { random: seededRandom(9) }));
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
        const back = await collect(decryptAge(chunks(a, piece), KP.identity));
        expect(Buffer.from(back).equals(Buffer.from(pt))).toBe(true);
      }),
      { numRuns: 15 },
    );
  });
});

describe.skipIf(!hasAgeCli)('age interop with the age CLI', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    await writeFile(join(dir, 'key.txt'), KP.identity + '\n', { mode: 0o600 });
  });
  afterAll(() => cleanup());

  it.each(SIZES)('%i bytes: ours -> age -d, and age -r -> ours', async (n) => {
    const pt = pattern(n, n + 7);
    const ours = await encrypt(pt);
    expect((await run('age', ['-d', '-i', join(dir, 'key.txt')], ours)).equals(Buffer.from(pt))).toBe(true);
    const theirs = await run('age', ['-r', KP.recipient], pt);
    expect(Buffer.from(await decrypt(theirs)).equals(Buffer.from(pt))).toBe(true);
  });

  it('an age file with extra recipients (and age\'s grease stanzas) decrypts with ours', async () => {
    const pt = pattern(5000);
    const ct = await run('age', ['-r', OTHER.recipient, '-r', KP.recipient], pt);
    expect(Buffer.from(await decrypt(ct)).equals(Buffer.from(pt))).toBe(true);
    expect(Buffer.from(await decrypt(ct, OTHER.identity)).equals(Buffer.from(pt))).toBe(true);
  });

  it('armored files are refused as UnknownFormat with a clear message', async () => {
    const ct = await run('age', ['-a', '-r', KP.recipient], pattern(10));
    await expectCode(decrypt(ct), 'UnknownFormat', /armor/);
  });

  it('age refuses what we refuse: an empty final chunk after a full one', async () => {
    const bad = await emptyLastChunkFile();
    await expect(run('age', ['-d', '-i', join(dir, 'key.txt')], bad)).rejects.toThrow();
  });
});

async function readHeaderOf(ct: Uint8Array): Promise<Uint8Array> {
  const h = await readHeader(new ByteReader(chunks(ct)));
  return utf8(Buffer.from(h.macInput).toString('latin1') + ' ' + Buffer.from(h.mac).toString('base64').replace(/=+$/, '') + '\n');
}

/** A file whose payload is one full chunk followed by an empty flagged chunk (non-conforming). */
async function emptyLastChunkFile(): Promise<Uint8Array> {
  const rnd = seededRandom(42);
  const fileKey = rnd(16);
  const stanza = wrapX25519(fileKey, parseRecipient(KP.recipient), rnd(32));
  const nonce = rnd(16);
  const key = payloadKey(fileKey, nonce);
  return Buffer.concat([
    sealHeader([stanza], fileKey),
    nonce,
    sealChunk(key, 0, false, pattern(CHUNK_SIZE)),
    sealChunk(key, 1, true, new Uint8Array(0)),
  ]);
}

describe('age decryption rejects bad input with typed errors', () => {
  it('wrong identity -> WrongKey (the library agrees it is not decryptable)', async () => {
    const ct = await encrypt(pattern(100));
    await expectCode(decrypt(ct, OTHER.identity), 'WrongKey');
    await expect(libDecrypt(ct, OTHER.identity)).rejects.toThrow();
  });

  it('altered header MAC or an added stanza -> Tampered', async () => {
    const ct = Buffer.from(await encrypt(pattern(100)));
    const macAt = ct.indexOf('\n--- ') + 5;
    const flipped = Buffer.from(ct);
    flipped[macAt] = flipped[macAt] === 0x41 ? 0x42 : 0x41;
    await expectCode(decrypt(flipped), 'Tampered', /MAC/);

    const h = await readHeader(new ByteReader(chunks(ct)));
    const extra: Stanza[] = [...h.stanzas, { type: 'grease', args: ['x'], body: new Uint8Array(3) }];
    const withExtra = Buffer.concat([encodeHeader(extra, h.mac), ct.subarray(macAt + 44)]);
    await expectCode(decrypt(withExtra), 'Tampered', /MAC/);
    await expect(libDecrypt(withExtra)).rejects.toThrow();
  });

  it('an altered X25519 share -> WrongKey (indistinguishable from another recipient)', async () => {
    const ct = Buffer.from(await encrypt(pattern(100)));
    const at = ct.indexOf('-> X25519 ') + 12;
    ct[at] = ct[at] === 0x41 ? 0x42 : 0x41;
    await expectCode(decrypt(ct), 'WrongKey');
  });

  it('a low-order X25519 share -> Malformed', async () => {
    const rnd = seededRandom(3);
    const fileKey = rnd(16);
    const stanza: Stanza = { type: 'X25519', args: ['A'.repeat(43)], body: new Uint8Array(32) };
    const ct = Buffer.concat([sealHeader([stanza], fileKey), rnd(16), new Uint8Array(16)]);
    await expectCode(decrypt(ct), 'Malformed', /low-order/);
  });

  it('an altered payload byte -> Tampered, at any position', async () => {
    const ct = Buffer.from(await encrypt(pattern(3 * 65536 + 10)));
    const header = (await readHeaderOf(ct)).length;
    for (const off of [header + 16, header + 16 + 65536 + 16 + 5, ct.length - 1]) {
      const bad = Buffer.from(ct);
      bad[off]! ^= 1;
      await expectCode(decrypt(bad), 'Tampered');
    }
  });

  it('truncation -> Truncated where provable, and always an error', async () => {
    const pt = pattern(3 * 65536);
    const ct = Buffer.from(await encrypt(pt));
    const header = (await readHeaderOf(ct)).length;
    await expectCode(decrypt(ct.subarray(0, header)), 'Truncated', /before its payload/);
    await expectCode(decrypt(ct.subarray(0, header + 10)), 'Truncated');
    await expectCode(decrypt(ct.subarray(0, header + 16)), 'Truncated', /without its final chunk/);
    await expectCode(decrypt(ct.subarray(0, header + 16 + 65536 + 16)), 'Truncated', /not the last one/);
    await expectCode(decrypt(ct.subarray(0, header + 16 + 2 * (65536 + 16))), 'Truncated', /not the last one/);
    await expectCode(decrypt(ct.subarray(0, ct.length - 1)), 'Tampered', /cut short/);
    for (let cut = 0; cut < header; cut += 17) {
      await expect(decrypt(ct.subarray(0, cut))).rejects.toBeInstanceOf(BackupError);
    }
  });

  it('trailing data -> Tampered', async () => {
    for (const n of [100, 65536]) {
      const ct = await encrypt(pattern(n));
      await expectCode(decrypt(Buffer.concat([ct, Buffer.from('x')])), 'Tampered');
      await expect(libDecrypt(Buffer.concat([ct, Buffer.from('x')]))).rejects.toThrow();
    }
    await expectCode(decrypt(Buffer.concat([await encrypt(pattern(65536)), Buffer.from('x')])), 'Tampered', /after the final chunk/);
  });

  it('an empty final chunk after full chunks -> Malformed, as the library also refuses', async () => {
    const bad = await emptyLastChunkFile();
    await expectCode(decrypt(bad), 'Malformed', /final chunk is empty/);
    await expect(libDecrypt(bad)).rejects.toThrow();
  });

  it('non-age input -> UnknownFormat', async () => {
    await expectCode(decrypt(new Uint8Array(0)), 'UnknownFormat');
    await expectCode(decrypt(utf8('hello world\n')), 'UnknownFormat');
    await expectCode(decrypt(pattern(100_000)), 'UnknownFormat');
    await expectCode(decrypt(utf8('age-encryption.org/v2\n')), 'UnknownFormat', /version/);
  });

  it('random bytes and random header mutations only ever fail with a BackupError (property)', async () => {
    const ct = Buffer.from(await encrypt(pattern(300)));
    const header = (await readHeaderOf(ct)).length;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (junk) => {
        await expect(decrypt(Buffer.concat([utf8('age-encryption.org/v1\n'), junk]))).rejects.toBeInstanceOf(BackupError);
        await expect(decrypt(junk)).rejects.toBeInstanceOf(BackupError);
      }),
      { numRuns: 200 },
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: header - 1 }), fc.integer({ min: 1, max: 255 }), async (pos, x) => {
        const bad = Buffer.from(ct);
        bad[pos]! ^= x;
        await expect(decrypt(bad)).rejects.toBeInstanceOf(BackupError);
      }),
      { numRuns: 200 },
    );
  });

  it('header codec round-trips arbitrary stanzas (property)', async () => {
    const arg = fc.stringMatching(/^[!-~]{1,20}$/);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ type: arg, args: fc.array(arg, { maxLength: 3 }), body: fc.uint8Array({ maxLength: 200 }) }), { maxLength: 4 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        async (stanzas, mac) => {
          const bytes = encodeHeader(stanzas, mac);
          const h = await readHeader(new ByteReader(chunks(Buffer.concat([bytes, Buffer.from('rest')]), 13)));
          expect(h.mac).toEqual(mac);
          expect(h.stanzas.map((s) => ({ ...s, body: new Uint8Array(s.body) }))).toEqual(stanzas);
        },
      ),
    );
  });

  it('rejects non-canonical header encodings', async () => {
    const ct = Buffer.from(await encrypt(pattern(10)));
    const text = ct.toString('latin1');
    const variants = [
      text.replace('-> X25519 ', '->  X25519 '), // empty argument
      text.replace('\n--- ', '\n---  '), // MAC with a leading space
      text.replace('age-encryption.org/v1\n', 'age-encryption.org/v1\r\n'),
    ];
    for (const v of variants) await expect(decrypt(Buffer.from(v, 'latin1'))).rejects.toBeInstanceOf(BackupError);
  });
});
