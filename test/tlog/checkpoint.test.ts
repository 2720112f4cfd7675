import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { toBase64 } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  formatCheckpoint,
  newSignerKey,
  openCheckpoint,
  parseCheckpoint,
  parseNote,
  parseSignerKey,
  sign,
  signCheckpoint,
} from '../../src/protocol/tlog/index.js';
import type { Checkpoint } from '../../src/protocol/tlog/index.js';
import { codeOf, expectTyped } from './errors.js';

const ROOT = new Uint8Array(32).map((_, i) => i);
const R = toBase64(ROOT);

describe('checkpoint text (tlog-checkpoint "Note text")', () => {
  it('parses and formats origin, size, root and extension lines', () => {
    const text = `example.com/log\n42\n${R}\next one\next two\n`;
    const cp = parseCheckpoint(text);
    expect(cp).toEqual({ origin: 'example.com/log', treeSize: 42, rootHash: ROOT, extensions: ['ext one', 'ext two'] });
    expect(formatCheckpoint(cp)).toBe(text);
    expect(parseCheckpoint(`o\n0\n${R}\n`).treeSize).toBe(0);
    expect(parseCheckpoint(`o\n${Number.MAX_SAFE_INTEGER}\n${R}\n`).treeSize).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    ['no final newline', `o\n1\n${R}`],
    ['two lines', `o\n1\n`],
    ['empty origin', `\n1\n${R}\n`],
    ['leading zero', `o\n01\n${R}\n`],
    ['sign', `o\n+1\n${R}\n`],
    ['negative', `o\n-1\n${R}\n`],
    ['exponent', `o\n1e3\n${R}\n`],
    ['space', `o\n 1\n${R}\n`],
    ['2^53', `o\n9007199254740992\n${R}\n`],
    ['2^64', `o\n18446744073709551616\n${R}\n`],
    ['short root', `o\n1\n${toBase64(new Uint8Array(31))}\n`],
    ['root not base64', `o\n1\n${R.slice(0, -1)}!\n`],
    ['unpadded root', `o\n1\n${R.replace(/=+$/, '')}\n`],
    ['empty extension line', `o\n1\n${R}\n\n`],
    ['control character', `o\r\n1\n${R}\n`],
  ])('refuses %s', (_name, text) => {
    expect(() => parseCheckpoint(text)).toThrow(ProtocolError);
  });

  it('refuses to format what it could not parse', () => {
    const ok: Checkpoint = { origin: 'o', treeSize: 1, rootHash: ROOT, extensions: [] };
    expect(() => formatCheckpoint({ ...ok, origin: 'a\nb' })).toThrow(ProtocolError);
    expect(() => formatCheckpoint({ ...ok, treeSize: -1 })).toThrow(ProtocolError);
    expect(() => formatCheckpoint({ ...ok, treeSize: 2 ** 53 })).toThrow(ProtocolError);
    expect(() => formatCheckpoint({ ...ok, rootHash: new Uint8Array(33) })).toThrow(ProtocolError);
    expect(() => formatCheckpoint({ ...ok, extensions: [''] })).toThrow(ProtocolError);
    expect(() => formatCheckpoint({ ...ok, extensions: ['a\nb'] })).toThrow(ProtocolError);
  });

  it('round-trips any checkpoint', () => {
    // eslint-disable-next-line no-control-regex
    const line = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => !/[\u0000-\u001F]/.test(s));
    const cpArb: fc.Arbitrary<Checkpoint> = fc.record({
      origin: line,
      treeSize: fc.oneof(fc.nat(), fc.maxSafeNat()),
      rootHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      extensions: fc.array(line, { maxLength: 3 }),
    });
    fc.assert(
      fc.property(cpArb, (cp) => {
        expect(parseCheckpoint(formatCheckpoint(cp))).toEqual(cp);
      }),
      { numRuns: 300 },
    );
  });

  it('random text never crashes the parser', () => {
    const near = fc
      .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 25 }), fc.string({ maxLength: 50 }), fc.boolean())
      .map(([a, b, c, nl]) => `${a}\n${b}\n${c}${nl ? '\n' : ''}`);
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), near), (s) => {
        try {
          parseCheckpoint(s);
        } catch (e) {
          expectTyped(e);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('signed checkpoints', () => {
  const cp: Checkpoint = { origin: 'log.example/bkv', treeSize: 7, rootHash: ROOT, extensions: [] };

  async function keys() {
    const log = await parseSignerKey((await newSignerKey('log.example/bkv', new Uint8Array(32).fill(1))).signerKey);
    const other = await parseSignerKey((await newSignerKey('other.example/log', new Uint8Array(32).fill(2))).signerKey);
    let now = 1_700_000_000;
    const w1 = await parseSignerKey((await newSignerKey('w1.example', new Uint8Array(32).fill(3), 0x04)).signerKey, {
      clock: () => now++,
    });
    const w2 = await parseSignerKey((await newSignerKey('w2.example', new Uint8Array(32).fill(4), 0x04)).signerKey, {
      clock: () => now++,
    });
    return { log, other, w1, w2 };
  }

  it('opens a checkpoint signed by the log and cosigned by witnesses', async () => {
    const { log, w1, w2 } = await keys();
    const signed = await signCheckpoint(cp, [log]);
    const cosigned = await sign(formatCheckpoint(cp), [w1, w2], parseNote(signed).signatures);
    const opened = await openCheckpoint(cosigned, { origin: cp.origin, log: log.verifier, witnesses: [w1.verifier, w2.verifier] });
    expect(opened.checkpoint).toEqual(cp);
    expect(opened.logSignatures.map((s) => s.name)).toEqual(['log.example/bkv']);
    expect(opened.cosignatures.map((s) => [s.name, s.timestamp])).toEqual([
      ['w1.example', 1_700_000_000],
      ['w2.example', 1_700_000_001],
    ]);
    // Witnesses the caller does not know are ignored.
    const alone = await openCheckpoint(cosigned, { origin: cp.origin, log: [log.verifier] });
    expect(alone.cosignatures).toEqual([]);
    expect(alone.note.unverified.length).toBe(2);
  });

  it('requires the log signature and the expected origin', async () => {
    const { log, other, w1 } = await keys();
    const witnessOnly = await sign(formatCheckpoint(cp), [w1]);
    expect(await codeOf(openCheckpoint(witnessOnly, { origin: cp.origin, log: log.verifier, witnesses: [w1.verifier] }))).toBe(
      'MissingSignature',
    );
    const signed = await signCheckpoint(cp, [log]);
    expect(await codeOf(openCheckpoint(signed, { origin: 'another.example/log', log: log.verifier }))).toBe('OriginMismatch');
    expect(await codeOf(openCheckpoint(signed, { origin: cp.origin, log: other.verifier }))).toBe('NoVerifiedSignature');
    const tampered = signed.replace('\n7\n', '\n8\n');
    expect(await codeOf(openCheckpoint(tampered, { origin: cp.origin, log: log.verifier }))).toBe('BadSignature');
  });

  it('a signed note whose text is not a checkpoint is Malformed, but only after verification', async () => {
    const { log } = await keys();
    const note = await sign('log.example/bkv\nnot a size\n', [log]);
    expect(await codeOf(openCheckpoint(note, { origin: cp.origin, log: log.verifier }))).toBe('Malformed');
    expect(await codeOf(openCheckpoint(note.replace('not', 'Not'), { origin: cp.origin, log: log.verifier }))).toBe(
      'BadSignature',
    );
  });
});
