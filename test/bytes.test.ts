import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromBase64, fromBase64Url, fromHex, toBase64, toBase64Url, toHex, constantTimeEqual } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/sha256.js';
import { Reader, Writer } from '../src/protocol/encoding.js';

describe('bytes', () => {
  it('base64, base64url and hex round-trip and match Node', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        expect(toBase64(b)).toBe(Buffer.from(b).toString('base64'));
        expect(toBase64Url(b)).toBe(Buffer.from(b).toString('base64url'));
        expect(fromBase64(toBase64(b))).toEqual(b);
        expect(fromBase64Url(toBase64Url(b))).toEqual(b);
        expect(fromHex(toHex(b))).toEqual(b);
      }),
    );
  });
  it('rejects non-canonical base64', () => {
    expect(() => fromBase64('AB==')).toThrow();
    expect(() => fromBase64('A===')).toThrow();
    expect(() => fromBase64('AA=A')).toThrow();
    expect(() => fromBase64('AA A')).toThrow();
  });
  it('constant-time equality', () => {
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(constantTimeEqual(Uint8Array.of(1), Uint8Array.of(1, 3))).toBe(false);
  });
  it('sha256 of the empty string', () => {
    expect(toHex(sha256(new Uint8Array()))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});

describe('canonical encoding', () => {
  it('round-trips and rejects truncation and trailing bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 0xffffffff }), fc.string(), (b, n, s) => {
        const enc = new Writer().label('bkv/v1/test').bytes(b).u32(n).string(s).finish();
        const r = new Reader(enc).expectLabel('bkv/v1/test');
        expect(r.bytes()).toEqual(b);
        expect(r.u32()).toBe(n);
        expect(r.string()).toBe(s);
        r.done();
        expect(() => new Reader(enc.subarray(0, enc.length - 1)).expectLabel('bkv/v1/test').bytes()).not.toThrow();
        const truncated = new Reader(enc.subarray(0, enc.length - 1)).expectLabel('bkv/v1/test');
        expect(() => {
          truncated.bytes();
          truncated.u32();
          truncated.string();
          truncated.done();
        }).toThrow();
      }),
    );
  });
  it('random bytes never crash the reader with anything but a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        try {
          const r = new Reader(b).expectLabel('x');
          r.bytes();
          r.done();
        } catch (e) {
          expect((e as Error).name).toBe('ProtocolError');
        }
      }),
    );
  });
});
