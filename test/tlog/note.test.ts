import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromBase64, fromHex, toHex, utf8 } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import {
  MAX_NOTE_SIGNATURES,
  SIGNATURE_TYPE_COSIGNATURE_V1,
  SIGNATURE_TYPE_ED25519,
  computeKeyId,
  cosignatureTimestamp,
  cosignedMessage,
  formatKeyId,
  formatNote,
  isValidKeyName,
  newSignerKey,
  open,
  parseCheckpoint,
  parseNote,
  parseSignerKey,
  parseVerifierKey,
  sign,
  verifierFromPublicKey,
} from '../../src/protocol/tlog/index.js';
import type { Note, NoteSignature } from '../../src/protocol/tlog/index.js';
import { readVectorJson } from './vectors.js';
import { codeOf, expectTyped } from './errors.js';

interface NoteVector {
  name: string;
  vkey: string;
  note_text: string | null;
  note_text_hex?: string;
  expect: 'valid' | 'invalid';
}

interface KeyVector {
  name: string;
  vkey: string;
  expect: 'valid' | 'invalid';
  key_name?: string;
  key_id?: string;
  signature_type?: number;
  public_key_hex?: string;
  signer_key?: string;
  signer_seed_hex?: string;
}

interface SignatureExpectation {
  key_name: string;
  key_id: string;
  signature_len: number;
  signature_hex?: string;
  cosignature_timestamp?: number;
  ed25519_signature_hex?: string;
}

interface SpecExample {
  name: string;
  note_text: string;
  expect_parse: {
    body: string;
    origin?: string;
    tree_size?: number;
    root_hash_b64?: string;
    root_hash_hex?: string;
    extension_lines?: string[];
    signatures: SignatureExpectation[];
  };
  cosigned_message_example?: string;
}

const notes = readVectorJson('signed-note/notes.json') as NoteVector[];
const keys = readVectorJson('signed-note/keys.json') as KeyVector[];
const examples = readVectorJson('signed-note/spec-examples-parse-only.json') as SpecExample[];

const peter = keys.find((k) => k.name === 'go-peterneumann')!;
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_SIGNED = notes.find((n) => n.name === 'go-note-peterneumann')!.note_text!;

function noteInput(v: NoteVector): string | Uint8Array {
  return v.note_text ?? fromHex(v.note_text_hex!);
}

/** The exact reason each invalid vector must be refused for. */
const INVALID_REASON: Record<string, string> = {
  'go-note-invalid-signature': 'BadSignature',
  'go-note-no-verifiable-signature': 'NoVerifiedSignature',
  'go-note-misnamed-signature': 'NoVerifiedSignature',
  'go-note-wrong-key-id': 'NoVerifiedSignature',
};

describe('signed-note vectors (notes.json)', () => {
  it('has 6 valid and 13 invalid notes', () => {
    expect(notes.filter((n) => n.expect === 'valid').length).toBe(6);
    expect(notes.filter((n) => n.expect === 'invalid').length).toBe(13);
  });

  it.each(notes.map((n) => [n.name, n] as const))('%s', async (_name, v) => {
    const verifier = parseVerifierKey(v.vkey);
    const got = await codeOf(open(noteInput(v), [verifier]));
    if (v.expect === 'valid') {
      expect(got).toBe('ok');
      const opened = await open(noteInput(v), [verifier]);
      expect(opened.verified.map((s) => s.name)).toEqual([verifier.name]);
      expect(opened.verified[0]!.keyId).toBe(verifier.keyId);
      expect(opened.text + '\n').toBe((v.note_text ?? '').slice(0, opened.text.length + 1));
    } else {
      expect(got).toBe(INVALID_REASON[v.name] ?? 'Malformed');
    }
  });

  it('verifies the two-signature note with both keys at once', async () => {
    const both = notes.find((n) => n.name === 'go-note-peter-and-enoch-verify-with-peter')!;
    const enoch = keys.find((k) => k.name === 'go-enochroot')!;
    const opened = await open(both.note_text!, [parseVerifierKey(peter.vkey), parseVerifierKey(enoch.vkey)]);
    expect(opened.verified.map((s) => s.name)).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(opened.unverified).toEqual([]);
  });

  it('drops repeated signature lines (duplicated-signatures vector)', async () => {
    const dup = notes.find((n) => n.name === 'go-note-duplicated-signatures')!;
    const opened = await open(dup.note_text!, [parseVerifierKey(dup.vkey)]);
    expect(opened.verified.length).toBe(1);
    // Enoch's line twice (kept once) and Enoch's corrupted line: two distinct unknown signatures.
    expect(opened.unverified.map((s) => s.name)).toEqual(['EnochRoot', 'EnochRoot']);
  });

  it('a known key with a second, bad signature rejects the note even after a good one', async () => {
    const bad = notes.find((n) => n.name === 'go-note-invalid-signature')!;
    const badLine = bad.note_text!.split('\n\n')[1]!;
    expect(await codeOf(open(GO_SIGNED + badLine, [parseVerifierKey(peter.vkey)]))).toBe('BadSignature');
  });
});

describe('signed-note keys (keys.json)', () => {
  it('has 3 valid and 2 invalid keys', () => {
    expect(keys.filter((k) => k.expect === 'valid').length).toBe(3);
    expect(keys.filter((k) => k.expect === 'invalid').length).toBe(2);
  });

  it.each(keys.filter((k) => k.expect === 'valid').map((k) => [k.name, k] as const))('valid %s', (_n, k) => {
    const v = parseVerifierKey(k.vkey);
    expect(v.name).toBe(k.key_name);
    expect(formatKeyId(v.keyId)).toBe(k.key_id);
    expect(v.type).toBe(k.signature_type);
    expect(toHex(v.publicKey)).toBe(k.public_key_hex);
    expect(v.verifierKey).toBe(k.vkey);
    expect(computeKeyId(v.name, v.type, v.publicKey)).toBe(v.keyId);
    expect(verifierFromPublicKey(v.name, v.publicKey).verifierKey).toBe(k.vkey);
  });

  it('invalid: key material that is not 32 bytes', () => {
    const k = keys.find((x) => x.name === 'go-bad-vkey-wrong-length')!;
    expect(() => parseVerifierKey(k.vkey)).toThrow(ProtocolError);
  });

  it('invalid: unknown signature type 0x65', () => {
    const k = keys.find((x) => x.name === 'go-bad-vkey-unknown-algorithm')!;
    expect(() => parseVerifierKey(k.vkey)).toThrow(expect.objectContaining({ code: 'UnsupportedKeyType' }));
  });

  it('rejects a vkey whose key ID does not match, a bad name and a bad key ID', () => {
    const [name, , b64] = ['PeterNeumann', 'c74f20a3', peter.vkey.split('+').slice(2).join('+')];
    expect(() => parseVerifierKey(`${name}+c74f20a4+${b64}`)).toThrow(expect.objectContaining({ code: 'KeyIdMismatch' }));
    expect(() => parseVerifierKey(`Peter Neumann+c74f20a3+${b64}`)).toThrow(ProtocolError);
    expect(() => parseVerifierKey(`${name}+c74f20a+${b64}`)).toThrow(ProtocolError);
    expect(() => parseVerifierKey(`${name}+c74f20a3`)).toThrow(ProtocolError);
    expect(() => parseVerifierKey(`+c74f20a3+${b64}`)).toThrow(ProtocolError);
    // Hex digits in either case identify the same key.
    expect(parseVerifierKey(`${name}+C74F20A3+${b64}`).verifierKey).toBe(peter.vkey);
  });

  it('the published test signer key derives the vkey and reproduces the Go TestSign output', async () => {
    const signer = await parseSignerKey(peter.signer_key!);
    expect(signer.verifier.verifierKey).toBe(peter.vkey);
    expect(signer.name).toBe('PeterNeumann');
    expect(formatKeyId(signer.keyId)).toBe('c74f20a3');
    expect(fromBase64(peter.signer_key!.split('+').slice(4).join('+')).subarray(1)).toEqual(fromHex(peter.signer_seed_hex!));
    expect(await sign(GO_TEXT, [signer])).toBe(GO_SIGNED);
    const fresh = await newSignerKey('PeterNeumann', fromHex(peter.signer_seed_hex!));
    expect(fresh).toEqual({ signerKey: peter.signer_key, verifierKey: peter.vkey });
  });

  it('rejects malformed signer keys', async () => {
    const sk = peter.signer_key!;
    expect(await codeOf(parseSignerKey(sk.replace('PRIVATE+KEY+', 'PRIVATE+KEY')))).toBe('Malformed');
    expect(await codeOf(parseSignerKey(sk.replace('c74f20a3', 'c74f20a4')))).toBe('KeyIdMismatch');
    expect(await codeOf(parseSignerKey(sk.replace('+AYEK', '+ZYEK')))).toBe('UnsupportedKeyType');
    expect(await codeOf(parseSignerKey(sk.slice(0, -4)))).toBe('Malformed');
  });
});

describe('C2SP spec examples (parse only)', () => {
  it.each(examples.map((e) => [e.name, e] as const))('%s', (_n, e) => {
    const note = parseNote(e.note_text);
    expect(note.text).toBe(e.expect_parse.body);
    expect(formatNote(note)).toBe(e.note_text);
    expect(note.signatures.length).toBe(e.expect_parse.signatures.length);
    e.expect_parse.signatures.forEach((want, i) => {
      const got = note.signatures[i]!;
      expect(got.name).toBe(want.key_name);
      expect(formatKeyId(got.keyId)).toBe(want.key_id);
      expect(got.signature.length).toBe(want.signature_len);
      if (want.signature_hex !== undefined) expect(toHex(got.signature)).toBe(want.signature_hex);
      if (want.cosignature_timestamp !== undefined) {
        expect(cosignatureTimestamp(got.signature)).toBe(want.cosignature_timestamp);
        expect(toHex(got.signature.subarray(8))).toBe(want.ed25519_signature_hex);
        expect(new TextDecoder().decode(cosignedMessage(note.text, want.cosignature_timestamp))).toBe(
          e.cosigned_message_example,
        );
      }
    });
    if (e.expect_parse.origin !== undefined) {
      const cp = parseCheckpoint(note.text);
      expect(cp.origin).toBe(e.expect_parse.origin);
      expect(cp.treeSize).toBe(e.expect_parse.tree_size);
      if (e.expect_parse.root_hash_hex !== undefined) expect(toHex(cp.rootHash)).toBe(e.expect_parse.root_hash_hex);
      expect(cp.extensions).toEqual(e.expect_parse.extension_lines ?? []);
    }
  });
});

describe('cosignatures (type 0x04, cosignature/v1)', () => {
  const body = examples[0]!.expect_parse.body;

  it('sign and verify with a timestamp from the clock', async () => {
    const log = await parseSignerKey(peter.signer_key!);
    const { signerKey } = await newSignerKey('witness.example/w1', new Uint8Array(32).fill(7), SIGNATURE_TYPE_COSIGNATURE_V1);
    const witness = await parseSignerKey(signerKey, { clock: () => 1679315147 });
    expect(witness.verifier.type).toBe(SIGNATURE_TYPE_COSIGNATURE_V1);
    expect(witness.keyId).toBe(computeKeyId('witness.example/w1', 0x04, witness.verifier.publicKey));
    // The witness vkey parses back (0x04 vkeys, tlog-cosignature "Format").
    expect(parseVerifierKey(witness.verifier.verifierKey).keyId).toBe(witness.keyId);

    const logged = await sign(body, [log]);
    const cosigned = await sign(body, [witness], parseNote(logged).signatures);
    const opened = await open(cosigned, [log.verifier, witness.verifier]);
    expect(opened.verified).toEqual([
      expect.objectContaining({ name: 'PeterNeumann', type: SIGNATURE_TYPE_ED25519 }),
      expect.objectContaining({ name: 'witness.example/w1', type: 0x04, timestamp: 1679315147 }),
    ]);
    const sig = parseNote(cosigned).signatures[1]!;
    expect(sig.signature.length).toBe(72);
    // The signature covers the timestamp: changing it breaks the cosignature.
    const moved = sig.signature.slice();
    moved[7]! ^= 1;
    const tampered = formatNote({ text: body, signatures: [parseNote(logged).signatures[0]!, { ...sig, signature: moved }] });
    expect(await codeOf(open(tampered, [log.verifier, witness.verifier]))).toBe('BadSignature');
    // An Ed25519 (0x01) verifier with the same key is a different key ID: the line is unknown.
    const plain = verifierFromPublicKey('witness.example/w1', witness.verifier.publicKey);
    expect(await codeOf(open(cosigned, [plain]))).toBe('NoVerifiedSignature');
  });

  it('keeps one entry per cosigner, the newest', async () => {
    const { signerKey } = await newSignerKey('w2', new Uint8Array(32).fill(9), 0x04);
    let now = 100;
    const w = await parseSignerKey(signerKey, { clock: () => now });
    const first = parseNote(await sign(body, [w])).signatures;
    now = 200;
    const second = parseNote(await sign(body, [w])).signatures;
    const both = formatNote({ text: body, signatures: [...second, ...first] });
    const opened = await open(both, [w.verifier]);
    expect(opened.verified.map((s) => s.timestamp)).toEqual([200]);
  });

  it('a cosigner needs a clock', async () => {
    const { signerKey } = await newSignerKey('w3', new Uint8Array(32).fill(1), 0x04);
    await expect(parseSignerKey(signerKey)).rejects.toThrow(TypeError);
  });
});

describe('note rules', () => {
  it('refuses texts it cannot sign', async () => {
    const signer = await parseSignerKey(peter.signer_key!);
    for (const bad of ['no newline', 'tab\there\n', 'cr\r\n', 'lone \ud800 surrogate\n']) {
      expect(await codeOf(sign(bad, [signer]))).toBe('Malformed');
    }
    expect(await codeOf(sign('text\n', []))).toBe('Malformed');
  });

  it('keeps a leading byte order mark as part of the text', async () => {
    const signer = await parseSignerKey(peter.signer_key!);
    const signed = await sign('\ufeffhello\n', [signer]);
    const opened = await open(utf8(signed), [signer.verifier]);
    expect(opened.text).toBe('\ufeffhello\n');
  });

  it('splits at the last empty line and accepts text with empty lines', async () => {
    const signer = await parseSignerKey(peter.signer_key!);
    for (const text of ['\n', 'a\n\n', 'a\n\nb\n', '\n\n\n']) {
      const opened = await open(await sign(text, [signer]), [signer.verifier]);
      expect(opened.text).toBe(text);
    }
  });

  it('accepts 100 signatures and refuses 101', async () => {
    const line = GO_SIGNED.split('\n\n')[1]!;
    expect(parseNote(GO_TEXT + '\n' + line.repeat(MAX_NOTE_SIGNATURES)).signatures.length).toBe(100);
    expect(() => parseNote(GO_TEXT + '\n' + line.repeat(MAX_NOTE_SIGNATURES + 1))).toThrow(ProtocolError);
  });

  it('key names: no Unicode space, no plus, not empty', () => {
    expect(isValidKeyName('example.com/log')).toBe(true);
    expect(isValidKeyName('ünïcödé')).toBe(true);
    for (const bad of ['', 'a b', 'a+b', 'a\u00a0b', 'a\u2003b', 'a\u3000b', 'a\u0085b', 'a\tb', 'a\u0001b']) {
      expect(isValidKeyName(bad)).toBe(false);
    }
  });

  it('refuses two different verifiers for one name and key ID', async () => {
    const v = parseVerifierKey(peter.vkey);
    const fake = { name: v.name, keyId: v.keyId, type: 1, verify: async () => true };
    expect(await codeOf(open(GO_SIGNED, [v, fake]))).toBe('AmbiguousKey');
    expect(await codeOf(open(GO_SIGNED, [v, v]))).toBe('ok');
  });
});

// --- properties ---

const nameArb = fc
  .string({ unit: 'grapheme', minLength: 1, maxLength: 20 })
  .filter((s) => isValidKeyName(s));
const textArb = fc
  .string({ unit: 'grapheme', maxLength: 80 })
  // eslint-disable-next-line no-control-regex
  .map((s) => s.replace(/[\u0000-\u0009\u000B-\u001F]/g, '') + '\n');
const sigArb: fc.Arbitrary<NoteSignature> = fc.record({
  name: nameArb,
  keyId: fc.nat({ max: 0xffffffff }),
  signature: fc.uint8Array({ minLength: 1, maxLength: 80 }),
});
const noteArb: fc.Arbitrary<Note> = fc.record({
  text: textArb,
  signatures: fc.array(sigArb, { minLength: 1, maxLength: 5 }),
});

describe('note properties', () => {
  it('parse(format(note)) round-trips', () => {
    fc.assert(
      fc.property(noteArb, (n) => {
        const s = formatNote(n);
        expect(parseNote(s)).toEqual(n);
        expect(parseNote(utf8(s))).toEqual(n);
      }),
      { numRuns: 300 },
    );
  });

  it('sign then open round-trips for any text', async () => {
    const signer = await parseSignerKey(peter.signer_key!);
    await fc.assert(
      fc.asyncProperty(textArb, async (text) => {
        const opened = await open(await sign(text, [signer]), [signer.verifier]);
        expect(opened.text).toBe(text);
      }),
      { numRuns: 50 },
    );
  });

  it('random strings and bytes never crash the parser', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.uint8Array({ maxLength: 200 })), (input) => {
        try {
          parseNote(input);
        } catch (e) {
          expectTyped(e);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('mutated notes either open or fail with a typed error', async () => {
    const verifier = parseVerifierKey(peter.vkey);
    const edit = fc.record({
      at: fc.nat({ max: GO_SIGNED.length }),
      cut: fc.nat({ max: 4 }),
      insert: fc.string({ unit: 'binary', maxLength: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(edit, async ({ at, cut, insert }) => {
        const mutated = GO_SIGNED.slice(0, at) + insert + GO_SIGNED.slice(at + cut);
        const got = await codeOf(open(mutated, [verifier]));
        if (mutated === GO_SIGNED) expect(got).toBe('ok');
      }),
      { numRuns: 200 },
    );
  });

  it('random key strings never crash the key parsers', async () => {
    const keyLike = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.tuple(fc.string(), fc.string({ maxLength: 9 }), fc.base64String()).map(([a, b, c]) => `${a}+${b}+${c}`),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => `n+${formatKeyId(computeKeyId('n', b[0]!, b.subarray(1)))}+${Buffer.from(b).toString('base64')}`),
    );
    fc.assert(
      fc.property(keyLike, (k) => {
        try {
          parseVerifierKey(k);
        } catch (e) {
          expectTyped(e);
        }
      }),
      { numRuns: 500 },
    );
    await fc.assert(
      fc.asyncProperty(keyLike, async (k) => {
        await codeOf(parseSignerKey('PRIVATE+KEY+' + k));
      }),
      { numRuns: 100 },
    );
  });
});
