import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as age from 'age-encryption';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { utf8 } from '../../src/crypto/bytes.js';
import {
  deriveAgeKeyPair,
  encodeIdentity,
  identityToRecipient,
  parseIdentity,
  parseRecipient,
} from '../../src/backup/age-key.js';
import { isBackupError } from '../../src/backup/errors.js';
import { hasAgeCli, run } from './helpers.js';

const K = Uint8Array.from({ length: 32 }, (_, i) => i);
// Pinned so that a change to the label or derivation cannot slip through: every archive ever
// written depends on it. Cross-checked below against @noble's HKDF/X25519 and age-keygen.
const GOLDEN = {
  identity: 'AGE-SECRET-KEY-17X3PW0DUEKN579XAXLZAWULJYNPKZS244SMJRAW4LMKKKXXQEMJS4JXNLN',
  recipient: 'age1sx5hkehp432v89wqduq5mujt4l42ffxr04l0qxet8qj7kty7a5qqzn6ucj',
};

describe('age identity derived from K', () => {
  it('matches the pinned vector', () => {
    expect(deriveAgeKeyPair(K)).toEqual(GOLDEN);
  });

  it('is HKDF-SHA256(K, "", "bkv/v1/age-identity") per an independent implementation', () => {
    const secret = hkdf(sha256, K, new Uint8Array(0), utf8('bkv/v1/age-identity'), 32);
    expect(parseIdentity(GOLDEN.identity)).toEqual(secret);
    expect(encodeIdentity(secret)).toBe(GOLDEN.identity);
    expect(parseRecipient(GOLDEN.recipient)).toEqual(nobleX25519.getPublicKey(secret));
  });

  it('agrees with the age-encryption library for derived and generated identities (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), async (k) => {
        const kp = deriveAgeKeyPair(k);
        expect(await age.identityToRecipient(kp.identity)).toBe(kp.recipient);
      }),
      { numRuns: 30 },
    );
    for (let i = 0; i < 10; i++) {
      const id = await age.generateX25519Identity();
      expect(identityToRecipient(id)).toBe(await age.identityToRecipient(id));
      expect(encodeIdentity(parseIdentity(id))).toBe(id);
    }
  });

  it.skipIf(!hasAgeCli)('agrees with age-keygen -y', async () => {
    expect((await run('age-keygen', ['-y'], utf8(GOLDEN.identity + '\n'))).toString().trim()).toBe(GOLDEN.recipient);
    const generated = (await run('age-keygen', [])).toString();
    const id = /^AGE-SECRET-KEY-1[0-9A-Z]+$/m.exec(generated)![0];
    const recipient = /public key: (age1[0-9a-z]+)/.exec(generated)![1];
    expect(identityToRecipient(id)).toBe(recipient);
  });

  it('rejects a recipient given as identity, a wrong length K, and garbage', () => {
    const expectCode = (f: () => unknown, code: 'Malformed' | 'BadArgument') => {
      try {
        f();
        expect.unreachable();
      } catch (e) {
        expect(isBackupError(e, code)).toBe(true);
      }
    };
    expectCode(() => parseIdentity(GOLDEN.recipient), 'Malformed');
    expectCode(() => parseRecipient(GOLDEN.identity), 'Malformed');
    expectCode(() => parseRecipient('age1qqqq'), 'Malformed');
    expectCode(() => deriveAgeKeyPair(new Uint8Array(31)), 'BadArgument');
  });
});
