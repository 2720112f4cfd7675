import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bech32Decode, bech32Encode, fromWords, toWords } from '../../src/backup/bech32.js';
import { isBackupError } from '../../src/backup/errors.js';

// BIP-173, "Test vectors": valid and invalid Bech32 strings (checksum constant 1).
const VALID = [
  'A12UEL5L',
  'a12uel5l',
  'an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs',
  'abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw',
  '11' + 'q'.repeat(82) + 'c8247j',
  'split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w',
  '?1ezyfcl',
];
const INVALID = [
  '\x201nwldj5', // HRP character out of range
  '\x7f1axkwrx',
  '\x801eym55h',
  'an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx', // too long
  'pzry9x0s0muk', // no separator
  '1pzry9x0s0muk', // empty HRP
  'x1b4n0q5v', // invalid data character
  'li1dgmt3', // checksum too short
  'de1lg7wt\xff', // invalid character in checksum
  'A1G7SGD8', // checksum computed with uppercase HRP
  '10a06t8', // empty HRP
  '1qzzfhee', // empty HRP
];

describe('bech32', () => {
  it.each(VALID)('accepts BIP-173 valid vector %s and re-encodes it', (s) => {
    const { hrp, words } = bech32Decode(s);
    expect(bech32Encode(hrp, words)).toBe(s.toLowerCase());
  });

  it.each(INVALID)('rejects BIP-173 invalid vector %j', (s) => {
    expect(() => bech32Decode(s)).toThrow();
    try {
      bech32Decode(s);
    } catch (e) {
      expect(isBackupError(e, 'Malformed')).toBe(true);
    }
  });

  it('rejects mixed case and any single-character change', () => {
    expect(() => bech32Decode('A12uEL5L')).toThrow(/mixed case/);
    const s = 'abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw';
    for (let i = 7; i < s.length; i++) {
      const c = s[i] === 'q' ? 'p' : 'q';
      expect(() => bech32Decode(s.slice(0, i) + c + s.slice(i + 1))).toThrow();
    }
  });

  it('round-trips random byte strings and HRPs (property)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9-]{1,20}$/),
        fc.uint8Array({ maxLength: 40 }),
        (hrp, bytes) => {
          const s = bech32Encode(hrp, toWords(bytes));
          const d = bech32Decode(s);
          expect(d.hrp).toBe(hrp);
          expect(fromWords(d.words)).toEqual(bytes);
          expect(bech32Decode(s.toUpperCase()).hrp).toBe(hrp);
        },
      ),
    );
  });

  it('decoding never throws anything but a Malformed BackupError (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (s) => {
        try {
          bech32Decode(s);
        } catch (e) {
          expect(isBackupError(e, 'Malformed')).toBe(true);
        }
      }),
    );
  });

  it('rejects non-zero or excess padding bits', () => {
    expect(fromWords([31, 28])).toEqual(Uint8Array.of(0xff)); // 10 bits: 8 data + 2 zero padding
    expect(() => fromWords([31, 29])).toThrow(/padding/);
    expect(() => fromWords([31, 28, 0])).toThrow(/padding/);
  });
});
