/**
 * I8 for the JSON forms: the pinned trust file (parseTrustFile) and the HTTP envelope
 * (envelopeFromJson). Random JSON, and valid documents with one field replaced by random JSON,
 * give a ProtocolError or the original value, never another exception or a different fleet.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { toBase64, toHex } from '../../src/crypto/bytes.js';
import { fleetIdOf, makeTrustFile, parseTrustFile, type TrustFile } from '../../src/protocol/fleet.js';
import { envelopeFromJson, envelopeToJson, type EnvelopeJson } from '../../src/protocol/http.js';
import { MESSAGE_TYPES } from '../../src/protocol/messages.js';
import { bytes, decodeOrRefuse, equalBytes, varBytes } from './arbitraries.js';

const RUNS = { numRuns: 300 };

const keys = fc.record({ opaque: bytes(32), hpke: bytes(32), sign: bytes(32) });
const route = fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map(([a, b]) => ({ from: Math.min(a, b), to: Math.max(a, b) }));
const trustFile = fc.tuple(keys, fc.array(route, { minLength: 1, maxLength: 4 })).map(([k, r]) => makeTrustFile(k, r));

/** Paths to every field of a trust file, for one-field replacements. */
const TRUST_PATHS: (string | number)[][] = [['version'], ['mode'], ['fleetId'], ['keys'], ['keys', 'opaque'], ['keys', 'hpke'], ['keys', 'sign'], ['routes'], ['routes', 0], ['routes', 0, 'from'], ['routes', 0, 'to']];

function replaceAt(doc: unknown, path: readonly (string | number)[], value: unknown): unknown {
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  let o = copy;
  for (const p of path.slice(0, -1)) o = o[p] as Record<string | number, unknown>;
  o[path[path.length - 1]!] = value;
  return copy;
}

describe('I8: trust file', () => {
  it('round-trips valid trust files', () => {
    fc.assert(
      fc.property(trustFile, (t) => {
        const p = parseTrustFile(JSON.parse(JSON.stringify(t)));
        expect(toHex(p.fleetId)).toBe(t.fleetId);
        expect(toBase64(p.keys.hpke)).toBe(t.keys.hpke);
        expect(p.routes).toEqual(t.routes);
      }),
      RUNS,
    );
  });

  it('refuses random JSON with a ProtocolError (TrustFailure)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (j) => {
        const r = decodeOrRefuse(() => parseTrustFile(j));
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.error.code).toBe('TrustFailure');
      }),
      RUNS,
    );
  });

  it('a field replaced by random JSON is refused, or leaves the pinned keys unchanged', () => {
    fc.assert(
      fc.property(trustFile, fc.constantFrom(...TRUST_PATHS), fc.jsonValue(), (t, path, v) => {
        const doc = replaceAt(t, path, v);
        const r = decodeOrRefuse(() => parseTrustFile(doc));
        if (!r.ok) {
          expect(r.error.code).toBe('TrustFailure');
          return;
        }
        // The keys and fleet id are bound together: nothing else can come out of a tampered file.
        expect(toHex(r.value.fleetId)).toBe(t.fleetId);
        expect(equalBytes(fleetIdOf(r.value.keys), r.value.fleetId)).toBe(true);
        for (const rt of r.value.routes) {
          expect(Number.isInteger(rt.from) && Number.isInteger(rt.to) && rt.from >= 0 && rt.from <= rt.to && rt.to <= 0xffff).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('refuses route entries that are not objects of two integers (no silent coercion)', () => {
    fc.assert(
      fc.property(trustFile, fc.oneof(fc.constant(null), fc.constant('0'), fc.constant([0]), fc.constant(true), fc.constant(1.5), fc.string()), fc.constantFrom(['routes', 0], ['routes', 0, 'from'], ['routes', 0, 'to']), (t, bad, path) => {
        expect(() => parseTrustFile(replaceAt(t, path, bad))).toThrow(expect.objectContaining({ code: 'TrustFailure' }) as Error);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses keys swapped between roles, and keys of the wrong size', () => {
    fc.assert(
      fc.property(trustFile, fc.integer({ min: 0, max: 64 }).filter((n) => n !== 32), (t, n) => {
        fc.pre(t.keys.opaque !== t.keys.hpke);
        const swapped: TrustFile = { ...t, keys: { ...t.keys, opaque: t.keys.hpke, hpke: t.keys.opaque } };
        expect(() => parseTrustFile(swapped)).toThrow(expect.objectContaining({ code: 'TrustFailure' }) as Error);
        const short: TrustFile = { ...t, keys: { ...t.keys, sign: toBase64(new Uint8Array(n)) } };
        expect(() => parseTrustFile(short)).toThrow(expect.objectContaining({ code: 'TrustFailure' }) as Error);
      }),
      { numRuns: 100 },
    );
  });
});

const envelope = fc.record({ version: fc.integer({ min: 0, max: 0xffff }), type: fc.constantFrom(...MESSAGE_TYPES), hint: bytes(2), tag: bytes(32), enc: bytes(32), ciphertext: varBytes(300) });

describe('I8: envelope JSON', () => {
  it('round-trips valid envelopes', () => {
    fc.assert(
      fc.property(envelope, (e) => {
        expect(envelopeFromJson(envelopeToJson(e))).toEqual(e);
      }),
      RUNS,
    );
  });

  it('refuses fields of any other JSON type or length with a ProtocolError', () => {
    const fields = ['v', 'type', 'hint', 'tag', 'enc', 'ct'] as const;
    fc.assert(
      fc.property(envelope, fc.constantFrom(...fields), fc.oneof(fc.jsonValue(), fc.string(), varBytes(40).map(toBase64)), (e, f, v) => {
        const j = { ...envelopeToJson(e), [f]: v } as unknown as EnvelopeJson;
        const r = decodeOrRefuse(() => envelopeFromJson(j));
        if (r.ok) {
          // Accepted only if the replacement is itself a well-formed value for that field.
          const back = envelopeToJson(r.value);
          if (f === 'v') expect(back.v).toBe(v);
          else expect(back[f]).toBe(v);
        } else if (f === 'type') {
          expect(r.error.code).toBe('UnknownMessageType');
        } else {
          expect(r.error.code).toBe('Malformed');
        }
      }),
      { numRuns: 500 },
    );
  });

  it('refuses base64 of the wrong length for hint, tag and enc', () => {
    fc.assert(
      fc.property(envelope, fc.constantFrom(['hint', 2], ['tag', 32], ['enc', 32]) as fc.Arbitrary<['hint' | 'tag' | 'enc', number]>, fc.integer({ min: 0, max: 64 }), (e, [f, n], len) => {
        fc.pre(len !== n);
        const j = { ...envelopeToJson(e), [f]: toBase64(new Uint8Array(len)) };
        expect(() => envelopeFromJson(j)).toThrow(expect.objectContaining({ code: 'Malformed' }) as Error);
      }),
      RUNS,
    );
  });

  it('refuses non-canonical base64 (bad padding, whitespace, URL alphabet, stray bits)', () => {
    const e = envelopeToJson({ version: 1, type: 'Status', hint: Uint8Array.of(1, 2), tag: new Uint8Array(32).fill(7), enc: new Uint8Array(32).fill(9), ciphertext: Uint8Array.of(0xfb, 0xff) });
    for (const bad of ['AQI', 'AQI==', 'AQJ=', ' AQI=', 'AQI=\n', 'A-I=', 'AQI=AQI=']) {
      expect(() => envelopeFromJson({ ...e, hint: bad })).toThrow(expect.objectContaining({ code: 'Malformed' }) as Error);
    }
    expect(() => envelopeFromJson({ ...e, ct: '-_8=' })).toThrow(expect.objectContaining({ code: 'Malformed' }) as Error);
  });
});
