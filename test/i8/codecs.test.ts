/**
 * I8 for the binary codecs: valid values round-trip; random bytes, truncations, single-byte
 * changes, inserted, deleted and appended bytes are refused with a ProtocolError (never another
 * exception); and an accepted mutation is canonical (it re-encodes to exactly the bytes given), so
 * no value has two encodings and trailing bytes are never ignored.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concatBytes, utf8 } from '../../src/crypto/bytes.js';
import { Writer } from '../../src/protocol/encoding.js';
import { LABEL, PROTOCOL_VERSION } from '../../src/protocol/labels.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, LIMITS, messageTypeCode, MESSAGE_TYPES, type VaultRequest } from '../../src/protocol/messages.js';
import { decodeEntry, decodeStatement, encodeEntry, encodeStatement } from '../../src/protocol/log.js';
import { decodeOrRefuse, entry, equalBytes, mutations, request, response, statement, userId } from './arbitraries.js';

const RUNS = { numRuns: 300 };

interface Codec<T> {
  name: string;
  value: fc.Arbitrary<T>;
  encode(v: T): Uint8Array;
  decode(b: Uint8Array): T;
  /** The structure's label and header, so that random tails reach the field decoders. */
  prefixes: Uint8Array[];
}

const requestHead = (code: number, version = PROTOCOL_VERSION) => new Writer().label(LABEL.request).u16(version).u8(code).finish();
const replyHead = (code: number, ok: number) => new Writer().label(LABEL.reply).u16(PROTOCOL_VERSION).u8(code).u8(ok).finish();

const codecs: Codec<unknown>[] = [
  {
    name: 'request',
    value: request,
    encode: (v) => encodeRequest(v as VaultRequest),
    decode: decodeRequest,
    prefixes: MESSAGE_TYPES.map((t) => requestHead(messageTypeCode(t))),
  },
  {
    name: 'response',
    value: response,
    encode: (v) => encodeResponse(v as Parameters<typeof encodeResponse>[0]),
    decode: decodeResponse,
    prefixes: MESSAGE_TYPES.flatMap((t) => [replyHead(messageTypeCode(t), 0), replyHead(messageTypeCode(t), 1)]),
  },
  {
    name: 'log entry',
    value: entry,
    encode: (v) => encodeEntry(v as Parameters<typeof encodeEntry>[0]),
    decode: decodeEntry,
    prefixes: [new Writer().label('bkv/v1/log-entry').finish()],
  },
  {
    name: 'capture statement',
    value: statement,
    encode: (v) => encodeStatement(v as Parameters<typeof encodeStatement>[0]),
    decode: decodeStatement,
    prefixes: [new Writer().label('bkv/v1/capture-statement').finish()],
  },
];

for (const c of codecs) {
  describe(`I8 codec: ${c.name}`, () => {
    const encoded = c.value.map((v) => c.encode(v));

    it('round-trips every valid value, canonically', () => {
      fc.assert(
        fc.property(c.value, (v) => {
          const b = c.encode(v);
          const back = c.decode(b);
          expect(back).toEqual(v);
          expect(equalBytes(c.encode(back), b)).toBe(true);
        }),
        RUNS,
      );
    });

    it('refuses every truncation and every appended byte with a ProtocolError', () => {
      fc.assert(
        fc.property(encoded, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 32 }), (b, cut, tail) => {
          const t = decodeOrRefuse(() => c.decode(b.slice(0, cut % b.length)));
          expect(t.ok).toBe(false);
          const a = decodeOrRefuse(() => c.decode(concatBytes(b, tail)));
          expect(a.ok).toBe(false);
          if (!a.ok) expect(['Malformed', 'TooLarge']).toContain(a.error.code);
        }),
        RUNS,
      );
    });

    it('refuses mutations with a ProtocolError, or decodes them canonically (never silently)', () => {
      fc.assert(
        fc.property(mutations(encoded), ({ original, m }) => {
          const r = decodeOrRefuse(() => c.decode(m.bytes));
          if (m.kind === 'truncate' || m.kind === 'append') expect(r.ok).toBe(false);
          if (r.ok) {
            // Accepted only as a different value whose one encoding is exactly these bytes.
            expect(equalBytes(c.encode(r.value), m.bytes)).toBe(true);
            expect(equalBytes(m.bytes, original)).toBe(false);
          }
        }),
        { numRuns: 600 },
      );
    });

    it('never throws anything but a ProtocolError on random bytes, bare or behind a valid header', () => {
      fc.assert(
        fc.property(fc.constantFrom(new Uint8Array(0), ...c.prefixes), fc.uint8Array({ maxLength: 600 }), (prefix, tail) => {
          const r = decodeOrRefuse(() => c.decode(concatBytes(prefix, tail)));
          if (r.ok) expect(equalBytes(c.encode(r.value), concatBytes(prefix, tail))).toBe(true);
        }),
        RUNS,
      );
    });
  });
}

describe('I8 codec: request specifics', () => {
  const versionOffset = new Writer().label(LABEL.request).finish().length;

  it('refuses every other protocol version with UnsupportedVersion', () => {
    fc.assert(
      fc.property(request, fc.integer({ min: 0, max: 0xffff }).filter((v) => v !== PROTOCOL_VERSION), (req, v) => {
        const b = encodeRequest(req);
        b[versionOffset] = v >> 8;
        b[versionOffset + 1] = v & 0xff;
        expect(() => decodeRequest(b)).toThrow(expect.objectContaining({ name: 'ProtocolError', code: 'UnsupportedVersion' }) as Error);
      }),
      RUNS,
    );
  });

  it('refuses unknown message type codes with UnknownMessageType', () => {
    fc.assert(
      fc.property(request, fc.integer({ min: 0, max: 255 }).filter((t) => t < 1 || t > MESSAGE_TYPES.length), (req, t) => {
        const b = encodeRequest(req);
        b[versionOffset + 2] = t;
        expect(() => decodeRequest(b)).toThrow(expect.objectContaining({ code: 'UnknownMessageType' }) as Error);
      }),
      RUNS,
    );
  });

  it('refuses a plaintext over the limit with TooLarge before reading it', () => {
    fc.assert(
      fc.property(fc.integer({ min: LIMITS.plaintext + 1, max: 3 * LIMITS.plaintext }), (n) => {
        expect(() => decodeRequest(new Uint8Array(n))).toThrow(expect.objectContaining({ code: 'TooLarge' }) as Error);
      }),
      { numRuns: 20 },
    );
  });

  it('refuses user ids over 256 bytes and invalid UTF-8 with Malformed', () => {
    const long = 'x'.repeat(257);
    const w = new Writer().label(LABEL.request).u16(PROTOCOL_VERSION).u8(messageTypeCode('Status')).string(long).bytes(new Uint8Array(4)).finish();
    expect(() => decodeRequest(w)).toThrow(ProtocolError);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (raw) => {
        const b = new Writer().label(LABEL.request).u16(PROTOCOL_VERSION).u8(messageTypeCode('Status')).bytes(raw).bytes(new Uint8Array(4)).finish();
        const r = decodeOrRefuse(() => decodeRequest(b));
        // Accepted only if the bytes are UTF-8 that reads back to the very same bytes.
        if (r.ok) expect(equalBytes(utf8(r.value.userId), raw)).toBe(true);
      }),
      RUNS,
    );
  });

  it('keeps a leading U+FEFF in a user id (the decoder must not strip a BOM)', () => {
    fc.assert(
      fc.property(userId, (rest) => {
        const id = '\uFEFF' + rest;
        fc.pre(utf8(id).length <= 256);
        const req: VaultRequest = { type: 'Status', userId: id, nonce: new Uint8Array(16) };
        expect(decodeRequest(encodeRequest(req)).userId).toBe(id);
      }),
      { numRuns: 50 },
    );
  });
});
