/** fast-check arbitraries and helpers shared by the I8 property tests (test/i8). */
import fc from 'fast-check';
import { concatBytes, utf8 } from '../../src/crypto/bytes.js';
import { OPAQUE_SIZES } from '../../src/crypto/opaque-sizes.js';
import { ERROR_CODES, ProtocolError } from '../../src/protocol/errors.js';
import { LIMITS, MESSAGE_TYPES, type VaultRequest, type VaultResponse } from '../../src/protocol/messages.js';
import { MEMBER_ID_BYTES, type LogEntry, type Statement } from '../../src/protocol/log.js';

export const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
export const varBytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
export const safeNat = fc.maxSafeNat();

/** Any well-formed string whose UTF-8 fits the 256-byte user id field (empty included: the codec allows it). */
export const userId = fc.string({ unit: 'binary', maxLength: 64 }).filter((s) => utf8(s).length <= 256);
/** A user id the vault accepts (1..256 bytes). */
export const validUserId = userId.filter((s) => s.length > 0);

const auth = fc.record({ token: varBytes(LIMITS.sealedState), mac: bytes(LIMITS.sessionMac) });
const guesses = fc.integer({ min: 0, max: 255 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

export const request: fc.Arbitrary<VaultRequest> = fc.oneof(
  fc.record({ type: fc.constant('RegisterStart' as const), userId, registrationRequest: bytes(OPAQUE_SIZES.registrationRequest) }),
  fc.record({ type: fc.constant('RegisterFinish' as const), userId, registrationRecord: bytes(OPAQUE_SIZES.registrationRecord), wrappedKey: varBytes(LIMITS.wrappedKey), maxGuesses: guesses, state: varBytes(LIMITS.sealedState) }),
  fc.record({ type: fc.constant('RecoverStart' as const), userId, ke1: bytes(OPAQUE_SIZES.ke1) }),
  fc.record({ type: fc.constant('RecoverFinish' as const), userId, ke3: bytes(OPAQUE_SIZES.ke3), state: varBytes(LIMITS.sealedState) }),
  fc.record({ type: fc.constant('ChangePasswordStart' as const), userId, auth, registrationRequest: bytes(OPAQUE_SIZES.registrationRequest) }),
  fc.record({ type: fc.constant('ChangePasswordFinish' as const), userId, auth, registrationRecord: bytes(OPAQUE_SIZES.registrationRecord), wrappedKey: varBytes(LIMITS.wrappedKey), maxGuesses: guesses, state: varBytes(LIMITS.sealedState) }),
  fc.record({ type: fc.constant('Delete' as const), userId, auth }),
  fc.record({ type: fc.constant('Status' as const), userId, nonce: varBytes(LIMITS.nonce) }),
);

const guessInfo = fc.record({ guessesLeft: guesses, failuresSinceLastSuccess: u32 });

export const response: fc.Arbitrary<VaultResponse> = fc.oneof(
  fc.record({ type: fc.constantFrom('RegisterStart' as const, 'ChangePasswordStart' as const), outcome: fc.constant('Ok' as const), registrationResponse: bytes(OPAQUE_SIZES.registrationResponse), state: varBytes(LIMITS.sealedState) }),
  fc.record({ type: fc.constantFrom('RegisterFinish' as const, 'ChangePasswordFinish' as const), outcome: fc.constant('Ok' as const), generation: safeNat }),
  fc.record({ type: fc.constant('RecoverStart' as const), outcome: fc.constant('Ok' as const), ke2: bytes(OPAQUE_SIZES.ke2), state: varBytes(LIMITS.sealedState), guessesLeft: guesses, failuresSinceLastSuccess: u32 }),
  fc.record({ type: fc.constant('RecoverFinish' as const), outcome: fc.constant('Ok' as const), sealedWrappedKey: varBytes(LIMITS.wrappedKey + 64), sessionToken: varBytes(LIMITS.sealedState), generation: safeNat, attempt: safeNat }),
  fc.record({ type: fc.constant('Delete' as const), outcome: fc.constant('Ok' as const) }),
  fc.record({ type: fc.constant('Status' as const), outcome: fc.constant('Ok' as const), nonce: varBytes(LIMITS.nonce), fleetId: bytes(32), state: fc.constantFrom('none' as const, 'active' as const, 'tombstone' as const), maxGuesses: guesses, guessesLeft: guesses, failuresSinceLastSuccess: u32 }),
  fc.record({ type: fc.constantFrom(...MESSAGE_TYPES), outcome: fc.constant('Error' as const), code: fc.constantFrom(...ERROR_CODES) }),
  fc.record({ type: fc.constantFrom(...MESSAGE_TYPES), outcome: fc.constant('Error' as const), code: fc.constantFrom(...ERROR_CODES), guesses: guessInfo }),
);

export const entry: fc.Arbitrary<LogEntry> = fc.record({
  version: fc.integer({ min: 0, max: 0xffff }),
  index: safeNat,
  prev: bytes(32),
  root: bytes(32),
  batchDigest: bytes(32),
  leader: bytes(MEMBER_ID_BYTES),
  mac: bytes(32),
});

export const statement: fc.Arbitrary<Statement> = fc.record({ member: bytes(MEMBER_ID_BYTES), index: safeNat, hash: bytes(32), mac: bytes(32) });

export type Mutation = { kind: 'truncate' | 'flip' | 'append' | 'insert' | 'delete'; bytes: Uint8Array };

/** Truncations, single-byte changes, appended, inserted and deleted bytes of a valid encoding. */
export function mutations(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<{ original: Uint8Array; m: Mutation }> {
  return valid.chain((b) => {
    const grow = [
      fc.uint8Array({ minLength: 1, maxLength: 16 }).map((t): Mutation => ({ kind: 'append', bytes: concatBytes(b, t) })),
      fc.tuple(fc.nat({ max: b.length }), fc.integer({ min: 0, max: 255 })).map(([i, v]): Mutation => ({ kind: 'insert', bytes: concatBytes(b.subarray(0, i), Uint8Array.of(v), b.subarray(i)) })),
    ];
    if (b.length === 0) return fc.oneof(...grow).map((m) => ({ original: b, m }));
    return fc
      .oneof(
        fc.nat({ max: b.length - 1 }).map((n): Mutation => ({ kind: 'truncate', bytes: b.slice(0, n) })),
        fc.tuple(fc.nat({ max: b.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]): Mutation => {
          const c = b.slice();
          c[i] = c[i]! ^ x;
          return { kind: 'flip', bytes: c };
        }),
        ...grow,
        fc.nat({ max: b.length - 1 }).map((i): Mutation => ({ kind: 'delete', bytes: concatBytes(b.subarray(0, i), b.subarray(i + 1)) })),
      )
      .map((m) => ({ original: b, m }));
  });
}

/** Runs a decoder; a ProtocolError is a refusal (undefined), anything else thrown fails the test. */
export function decodeOrRefuse<T>(f: () => T): { ok: true; value: T } | { ok: false; error: ProtocolError } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof ProtocolError) return { ok: false, error: e };
    throw new Error(`decoder threw ${(e as Error)?.name}: ${(e as Error)?.message}, not a ProtocolError`, { cause: e });
  }
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
