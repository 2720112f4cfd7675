/**
 * The 64-digit recovery code (DESIGN section 1: "K as a 64-digit recovery code").
 *
 * Why the code does not *contain* K: 64 decimal digits hold log2(10^64) = 212.6 bits, and K is
 * 256 bits, so no 64-digit code can encode an arbitrary K. The choices were a longer code
 * (78 digits for 256 bits, plus check digits) or deriving K from the code. We keep the 64 digits
 * users are told about and derive K from them:
 *
 *   code    = 60 payload digits || 4 check digits
 *   payload = a uniformly random integer in [0, 10^60): 199.3 bits of entropy, well over the
 *             128-bit security level and over the 190 bits asked for; a guess costs an offline
 *             attacker one HKDF and one X25519, so 2^199 guesses are out of reach
 *   check   = the 4 digits that make the whole 64-digit number a multiple of 9973, the largest
 *             4-digit prime (the IBAN construction, ISO 7064 MOD 97-10, with a larger prime)
 *   K       = HKDF-SHA256(ikm = the 64 ASCII digits, salt = "", info = "bkv/v1/recovery-code", 32)
 *
 * The check catches every single-digit substitution (it changes the number by d * 10^i, and the
 * prime 9973 divides neither d < 10 nor 10^i), every transposition of adjacent digits
 * ((a - b) * 9 * 10^i) or of digits two apart ((a - b) * 99 * 10^i), anywhere in the code check
 * digits included, and any other error with probability 1 - 1/9973. So a mistyped code is
 * reported as "mistyped" before any decryption is tried.
 *
 * Consequence for the lead/CLI: in 'recovery-code' mode the app generates the code first and K
 * follows from it; a K that was generated at random (vault mode) has no 64-digit code.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { utf8 } from '../crypto/bytes.js';
import { BackupError } from './errors.js';

export const RECOVERY_CODE_DIGITS = 64;
const PAYLOAD_DIGITS = 60;
const CHECK_MODULUS = 9973n;
const PAYLOAD_BOUND = 10n ** BigInt(PAYLOAD_DIGITS);
export const RECOVERY_CODE_LABEL = 'bkv/v1/recovery-code';

export interface RecoveryCode {
  /** 64 digits, no separators. Secret. */
  code: string;
  /** The backup key K derived from it. Secret. */
  key: Uint8Array;
}

/** Appends the check digits to a 60-digit payload. */
export function withCheckDigits(payload: bigint): string {
  if (payload < 0n || payload >= PAYLOAD_BOUND) throw new BackupError('BadArgument', 'payload out of range');
  const shifted = payload * 10_000n;
  const check = (CHECK_MODULUS - (shifted % CHECK_MODULUS)) % CHECK_MODULUS;
  return (shifted + check).toString().padStart(RECOVERY_CODE_DIGITS, '0');
}

function keyFromCode(code: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', utf8(code), new Uint8Array(0), utf8(RECOVERY_CODE_LABEL), 32));
}

/** Draws a uniform payload by rejection sampling 200-bit integers (10^60 < 2^200). */
function randomPayload(random: (n: number) => Uint8Array): bigint {
  for (;;) {
    const b = random(25);
    const v = BigInt('0x' + Buffer.from(b).toString('hex'));
    if (v < PAYLOAD_BOUND) return v;
  }
}

export function newRecoveryCode(random: (n: number) => Uint8Array = (n) => new Uint8Array(randomBytes(n))): RecoveryCode {
  const code = withCheckDigits(randomPayload(random));
  return { code, key: keyFromCode(code) };
}

/**
 * Accepts a code as typed: digits with any spaces, tabs, newlines or dashes between them.
 * Returns K. Errors are `BadRecoveryCode` with a message that says what is wrong.
 */
export function parseRecoveryCode(text: string): Uint8Array {
  const code = text.replace(/[\s-]+/g, '');
  const bad = /[^0-9]/.exec(code);
  if (bad) throw new BackupError('BadRecoveryCode', `a recovery code has only digits (found ${JSON.stringify(bad[0])})`);
  if (code.length !== RECOVERY_CODE_DIGITS) {
    throw new BackupError('BadRecoveryCode', `a recovery code has ${RECOVERY_CODE_DIGITS} digits (found ${code.length})`);
  }
  if (BigInt(code) % CHECK_MODULUS !== 0n) {
    throw new BackupError('BadRecoveryCode', 'the recovery code has a typo: its check digits do not match');
  }
  return keyFromCode(code);
}

/** Groups of four digits separated by spaces: "1234 5678 ...". */
export function formatRecoveryCode(code: string): string {
  const digits = code.replace(/[\s-]+/g, '');
  if (!/^[0-9]{64}$/.test(digits)) throw new BackupError('BadRecoveryCode', 'not a 64-digit recovery code');
  return digits.match(/.{4}/g)!.join(' ');
}
