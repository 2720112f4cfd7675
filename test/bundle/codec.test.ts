/** Property tests of the bundle codec and the client's trust file. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { toBase64 } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { bundleToJson, formatBundle, parseBundle, parseBundleJson, type ParsedBundle } from '../../src/protocol/bundle.js';
import { parseValidatorTrust, type ValidatorTrustFile } from '../../src/client/bundle.js';
import { makeWorld, type World } from '../helpers/validator-world.js';

let w: World;
let b: ParsedBundle;
beforeAll(async () => {
  w = await makeWorld();
  b = (await w.publish()).bundle;
});
afterAll(async () => w?.close());

function typedOnly(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
  }
}

describe('bundle JSON', () => {
  it('round-trips, with and without a consistency proof', () => {
    expect(parseBundle(formatBundle(b))).toEqual(b);
    fc.assert(
      fc.property(fc.nat(1e12), fc.nat(1e12), fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 40 }), (size1, size2, proof) => {
        const withC = { ...b, consistency: { size1, size2, proof } };
        expect(parseBundle(formatBundle(withC))).toEqual(withC);
      }),
    );
  });

  it('random bytes, JSON values and field changes never crash the parser', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 500 }), (x) => typedOnly(() => parseBundle(x))));
    fc.assert(fc.property(fc.jsonValue(), (j) => typedOnly(() => parseBundleJson(j))));
    const keys = ['type', 'statement', 'countersignature', 'proof', 'consistency'] as const;
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue(), (k, v) => {
        typedOnly(() => parseBundleJson({ ...bundleToJson(b), [k]: v }));
      }),
    );
    fc.assert(
      fc.property(fc.nat(), fc.string({ maxLength: 3 }), (at, ins) => {
        const s = b.statement;
        const i = at % s.length;
        typedOnly(() => parseBundleJson({ ...bundleToJson(b), statement: s.slice(0, i) + ins + s.slice(i + 1) }));
        const p = b.proof;
        const j = at % p.length;
        typedOnly(() => parseBundleJson({ ...bundleToJson(b), proof: p.slice(0, j) + ins + p.slice(j + 1) }));
      }),
    );
    typedOnly(() => parseBundle('x'.repeat(200_000)));
  });
});

describe('the validator trust file', () => {
  function file(): ValidatorTrustFile {
    return {
      version: 1,
      mode: 'validator',
      validator: w.trust.validator.verifierKey,
      log: { origin: w.trust.log.origin, key: w.trust.log.key.verifierKey },
      witnesses: { keys: w.trust.witnesses.map((k) => k.verifierKey), quorum: 2 },
      operator: w.trust.operator.verifierKey,
      measurements: w.trust.measurements.map((m) => `sha256:${Buffer.from(m).toString('hex')}`),
      minimum: { seq: 0, checkpoint: { size: 1, root: toBase64(new Uint8Array(32)) } },
    };
  }

  it('parses what the tools write', () => {
    const t = parseValidatorTrust(file());
    expect(t.validator.verifierKey).toBe(w.trust.validator.verifierKey);
    expect(t.quorum).toBe(2);
    expect(t.minimum.checkpoint?.size).toBe(1);
  });

  it('refuses a witness key of the wrong type, a quorum above the witnesses, no measurement, a bad mode', () => {
    for (const change of [
      (f: ValidatorTrustFile) => (f.witnesses.keys = [w.trust.log.key.verifierKey]),
      (f: ValidatorTrustFile) => (f.witnesses.quorum = 3),
      (f: ValidatorTrustFile) => (f.witnesses.keys = [f.witnesses.keys[0]!, f.witnesses.keys[0]!]),
      (f: ValidatorTrustFile) => (f.measurements = []),
      (f: ValidatorTrustFile) => (f.operator = 'nope'),
      (f: ValidatorTrustFile) => ((f as unknown as { mode: string }).mode = 'pinned'),
    ]) {
      const f = file();
      change(f);
      expect(() => parseValidatorTrust(f)).toThrow(ProtocolError);
    }
    fc.assert(fc.property(fc.jsonValue(), (j) => typedOnly(() => parseValidatorTrust(j))));
  });
});
