import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8 } from '../../src/crypto/bytes.js';
import { isBackupError } from '../../src/backup/errors.js';
import { formatRecoveryCode, newRecoveryCode, parseRecoveryCode, withCheckDigits } from '../../src/backup/recovery-code.js';

const payload = fc.bigInt({ min: 0n, max: 10n ** 60n - 1n });

function rejects(text: string, message?: RegExp): void {
  try {
    parseRecoveryCode(text);
  } catch (e) {
    expect(isBackupError(e, 'BadRecoveryCode')).toBe(true);
    if (message) expect((e as Error).message).toMatch(message);
    return;
  }
  expect.unreachable(`accepted ${text}`);
}

describe('recovery codes', () => {
  it('a new code is 64 digits, a multiple of 9973, and parses back to its key', () => {
    for (let i = 0; i < 20; i++) {
      const { code, key } = newRecoveryCode();
      expect(code).toMatch(/^[0-9]{64}$/);
      expect(BigInt(code) % 9973n).toBe(0n);
      expect(parseRecoveryCode(code)).toEqual(key);
      expect(key).toEqual(hkdf(sha256, utf8(code), new Uint8Array(0), utf8('bkv/v1/recovery-code'), 32));
    }
  });

  it('accepts the formatted form and any spacing or dashes', () => {
    const { code, key } = newRecoveryCode();
    const f = formatRecoveryCode(code);
    expect(f).toMatch(/^([0-9]{4} ){15}[0-9]{4}$/);
    expect(parseRecoveryCode(f)).toEqual(key);
    expect(parseRecoveryCode(f.replace(/ /g, '-'))).toEqual(key);
    expect(parseRecoveryCode(`  ${f.replace(/ /g, '\n')}\n`)).toEqual(key);
  });

  it('says what is wrong with a mistyped code', () => {
    const { code } = newRecoveryCode();
    rejects(code.slice(1), /64 digits \(found 63\)/);
    rejects(code + '1', /found 65/);
    rejects(code.slice(0, 10) + 'O' + code.slice(11), /only digits/);
    const d = code[20] === '0' ? '1' : '0';
    rejects(code.slice(0, 20) + d + code.slice(21), /typo/);
  });

  it('catches every single-digit substitution (property)', () => {
    fc.assert(
      fc.property(payload, fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 9 }), (p, i, delta) => {
        const code = withCheckDigits(p);
        const wrong = String((Number(code[i]) + delta) % 10);
        rejects(code.slice(0, i) + wrong + code.slice(i + 1), /typo/);
      }),
      { numRuns: 500 },
    );
  });

  it('catches every transposition of adjacent or next-but-one digits (property)', () => {
    fc.assert(
      fc.property(payload, fc.integer({ min: 0, max: 62 }), fc.constantFrom(1, 2), (p, i, gap) => {
        const code = withCheckDigits(p);
        const j = Math.min(i + gap, 63);
        fc.pre(code[i] !== code[j]);
        const c = code.split('');
        [c[i], c[j]] = [c[j]!, c[i]!];
        rejects(c.join(''), /typo/);
      }),
      { numRuns: 500 },
    );
  });

  it('draws payloads uniformly: rejection sampling discards out-of-range draws', () => {
    // First draw 0xff.. (>= 10^60) must be rejected; the second (all zero) gives payload 0.
    let calls = 0;
    const { code } = newRecoveryCode((n) => new Uint8Array(n).fill(calls++ === 0 ? 0xff : 0));
    expect(calls).toBe(2);
    expect(code).toBe('0'.repeat(64));
  });
});
