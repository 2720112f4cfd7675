import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { toBase64, utf8 } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  TLOG_PROOF_HEADER,
  formatCheckpoint,
  formatTlogProof,
  inclusionProof,
  leafHash,
  newSignerKey,
  parseNote,
  parseSignerKey,
  parseTlogProof,
  rootFromLeafHashes,
  sign,
  signCheckpoint,
  subtreeReaderFromLeafHashes,
  verifyTlogProof,
} from '../../src/protocol/tlog/index.js';
import type { TlogProof } from '../../src/protocol/tlog/index.js';
import { codeOf, expectTyped } from './errors.js';

const ORIGIN = 'log.example/bkv';

async function fixture(n = 11) {
  const log = await parseSignerKey((await newSignerKey(ORIGIN, new Uint8Array(32).fill(5))).signerKey);
  const witness = await parseSignerKey((await newSignerKey('w.example', new Uint8Array(32).fill(6), 0x04)).signerKey, {
    clock: () => 1_750_000_000,
  });
  const entries = Array.from({ length: n }, (_, i) => utf8(`statement ${i}`));
  const leaves = entries.map(leafHash);
  const checkpoint = { origin: ORIGIN, treeSize: n, rootHash: rootFromLeafHashes(leaves), extensions: [] };
  const logged = await signCheckpoint(checkpoint, [log]);
  const note = await sign(formatCheckpoint(checkpoint), [witness], parseNote(logged).signatures);
  const read = subtreeReaderFromLeafHashes(leaves);
  const policy = { origin: ORIGIN, log: log.verifier, witnesses: [witness.verifier] };
  return { log, witness, leaves, note, read, policy };
}

describe('c2sp.org/tlog-proof@v1', () => {
  it('writes the layout of the spec', async () => {
    const { note, read } = await fixture();
    const proof = inclusionProof(6, 11, read);
    const text = formatTlogProof({ extra: utf8('context'), index: 6, proof, checkpoint: note });
    const lines = text.split('\n');
    expect(lines[0]).toBe('c2sp.org/tlog-proof@v1');
    expect(lines[1]).toBe(`extra ${toBase64(utf8('context'))}`);
    expect(lines[2]).toBe('index 6');
    expect(lines.slice(3, 3 + proof.length)).toEqual(proof.map(toBase64));
    expect(lines[3 + proof.length]).toBe('');
    expect(text.endsWith('\n\n' + note)).toBe(true);
    expect(parseTlogProof(text)).toEqual({ extra: utf8('context'), index: 6, proof, checkpoint: note });
    expect(parseTlogProof(utf8(text))).toEqual(parseTlogProof(text));
    // Without extra data, and with an empty proof.
    const bare = formatTlogProof({ index: 0, proof: [], checkpoint: note });
    expect(bare.startsWith(`${TLOG_PROOF_HEADER}\nindex 0\n\n`)).toBe(true);
    expect(parseTlogProof(bare)).toEqual({ index: 0, proof: [], checkpoint: note });
  });

  it('verifies every entry of the log, and nothing else', async () => {
    const { leaves, note, read, policy } = await fixture();
    for (let i = 0; i < leaves.length; i++) {
      const p = parseTlogProof(formatTlogProof({ index: i, proof: inclusionProof(i, 11, read), checkpoint: note }));
      const opened = await verifyTlogProof(p, leaves[i]!, policy);
      expect(opened.checkpoint.treeSize).toBe(11);
      expect(opened.cosignatures.map((c) => c.timestamp)).toEqual([1_750_000_000]);
      expect(await codeOf(verifyTlogProof(p, leaves[(i + 1) % 11]!, policy))).toBe('RootMismatch');
      expect(await codeOf(verifyTlogProof({ ...p, index: i + 11 }, leaves[i]!, policy))).toBe('InvalidProof');
    }
    const p = { index: 3, proof: inclusionProof(3, 11, read), checkpoint: note };
    expect(await codeOf(verifyTlogProof(p, leaves[3]!, { ...policy, origin: 'other.example' }))).toBe('OriginMismatch');
    const forged = { ...p, checkpoint: note.replace('\n11\n', '\n12\n') };
    expect(await codeOf(verifyTlogProof(forged, leaves[3]!, policy))).toBe('BadSignature');
  });

  it('refuses malformed proofs', async () => {
    const { note, read } = await fixture();
    const good = formatTlogProof({ index: 2, proof: inclusionProof(2, 11, read), checkpoint: note });
    const h = toBase64(new Uint8Array(32));
    const bad = [
      good.replace(TLOG_PROOF_HEADER, 'c2sp.org/tlog-proof@v2'),
      good.replace('index 2', 'index 02'),
      good.replace('index 2', 'index -2'),
      good.replace('index 2', 'index  2'),
      good.replace('index 2', 'index 9007199254740992'),
      good.replace('index 2\n', ''),
      good.replace('index 2\n', 'index 2\nextra AAAA\n'),
      good.replace(TLOG_PROOF_HEADER + '\n', `${TLOG_PROOF_HEADER}\nextra !!\n`),
      good.replace('index 2\n', `index 2\n${h.slice(4)}\n`),
      good.replace('index 2\n', `index 2\n${h} \n`),
      good.replace('\n\n', '\n'),
      good.slice(0, -1),
      good.replace(`\n${ORIGIN}\n11\n`, `\n${ORIGIN}\n011\n`),
      good + 'trailing line\n',
      `${TLOG_PROOF_HEADER}\nindex 2\n\n`,
      '',
    ];
    for (const text of bad) expect(() => parseTlogProof(text), text).toThrow(ProtocolError);
    expect(() => parseTlogProof(Uint8Array.of(0xff, ...utf8(good)))).toThrow(ProtocolError);
    expect(() => formatTlogProof({ index: -1, proof: [], checkpoint: note })).toThrow(ProtocolError);
    expect(() => formatTlogProof({ index: 0, proof: [new Uint8Array(31)], checkpoint: note })).toThrow(ProtocolError);
    expect(() => formatTlogProof({ index: 0, proof: [], checkpoint: 'not a note\n' })).toThrow(ProtocolError);
  });

  it('round-trips and never crashes on random or mutated input', async () => {
    const { note } = await fixture();
    const proofArb: fc.Arbitrary<TlogProof> = fc
      .record({
        extra: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
        index: fc.maxSafeNat(),
        proof: fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 8 }),
      })
      .map((r) => (r.extra === undefined ? { index: r.index, proof: r.proof, checkpoint: note } : { ...r, checkpoint: note }));
    fc.assert(
      fc.property(proofArb, (p) => {
        expect(parseTlogProof(formatTlogProof(p))).toEqual(p);
      }),
      { numRuns: 200 },
    );

    const sample = formatTlogProof({ extra: Uint8Array.of(1, 2), index: 5, proof: [new Uint8Array(32)], checkpoint: note });
    const mutated = fc
      .record({ at: fc.nat({ max: sample.length }), cut: fc.nat({ max: 3 }), insert: fc.string({ unit: 'binary', maxLength: 3 }) })
      .map(({ at, cut, insert }) => sample.slice(0, at) + insert + sample.slice(at + cut));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), mutated, fc.uint8Array({ maxLength: 100 })), (input) => {
        try {
          parseTlogProof(input);
        } catch (e) {
          expectTyped(e);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
