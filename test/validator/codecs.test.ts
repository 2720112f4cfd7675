/** Property tests of the statement and evidence codecs: round trips, one encoding, no crashes. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { utf8 } from '../../src/crypto/bytes.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { EVIDENCE_TYPE, formatEvidence, parseEvidence, type EvidencePackage } from '../../src/protocol/evidence.js';
import type { RouteRange } from '../../src/protocol/ids.js';
import { formatStatement, formatTime, parseSignedStatement, parseStatement, parseTime, type FleetKeysStatement } from '../../src/protocol/statement.js';

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const keyName = fc.stringMatching(/^[a-z0-9.\-/_]{1,40}$/);

/** 1..8 ascending, disjoint ranges. */
const routes: fc.Arbitrary<RouteRange[]> = fc
  .uniqueArray(fc.integer({ min: 0, max: 0xffff }), { minLength: 2, maxLength: 16 })
  .map((xs) => xs.sort((a, b) => a - b))
  .map((xs) => {
    const out: RouteRange[] = [];
    for (let i = 0; i + 1 < xs.length; i += 2) out.push({ from: xs[i]!, to: xs[i + 1]! });
    return out;
  })
  .filter((r) => r.length > 0);

const statement: fc.Arbitrary<FleetKeysStatement> = fc.record({
  operator: keyName,
  fleetId: bytes32,
  seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  prev: bytes32,
  notBefore: fc.integer({ min: 0, max: 253402300799 }),
  notAfter: fc.integer({ min: 0, max: 253402300799 }),
  routes,
  evidence: bytes32,
  measurement: bytes32,
  keys: fc.record({ opaque: bytes32, hpke: bytes32, sign: bytes32 }),
});

function onlyMalformed(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    expect(['Malformed', 'TooLarge']).toContain((e as ProtocolError).code);
  }
}

describe('statement text', () => {
  it('round-trips every statement, and formatting is the only encoding', () => {
    fc.assert(
      fc.property(statement, (s) => {
        const text = formatStatement(s);
        expect(parseStatement(text)).toEqual(s);
        expect(formatStatement(parseStatement(text))).toBe(text);
      }),
    );
  });

  it('has the layout of DESIGN section 6', () => {
    const s = fc.sample(statement, { numRuns: 1, seed: 7 })[0]!;
    const lines = formatStatement(s).split('\n');
    expect(lines[0]).toBe('backup-key-vault/fleet-keys/v1');
    expect(lines.slice(1, 7).map((l) => l.split(' ')[0])).toEqual(['operator', 'fleet', 'seq', 'prev', 'not-before', 'not-after']);
    expect(lines.filter((l) => l.startsWith('key ')).map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual(['key opaque ristretto255', 'key hpke x25519', 'key sign ed25519']);
    expect(lines.find((l) => l.startsWith('evidence '))).toMatch(/^evidence sha256:[0-9a-f]{64}$/);
  });

  it('refuses any single-character change that breaks canonical form, and never crashes', () => {
    fc.assert(
      fc.property(statement, fc.nat(), fc.string({ maxLength: 2 }), (s, at, insert) => {
        const text = formatStatement(s);
        const i = at % text.length;
        const changed = text.slice(0, i) + insert + text.slice(i + 1);
        try {
          const p = parseStatement(changed);
          // Whatever still parses must be canonical.
          expect(formatStatement(p)).toBe(changed);
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });

  it('random text and bytes never crash the parsers', () => {
    fc.assert(fc.property(fc.string({ maxLength: 600 }), (t) => onlyMalformed(() => parseStatement(t))));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => onlyMalformed(() => parseSignedStatement(b))));
    fc.assert(fc.property(fc.string({ maxLength: 600 }), (t) => onlyMalformed(() => parseSignedStatement(`${t}\n\n\u2014 op AAAAAAAA\n`))));
    onlyMalformed(() => parseSignedStatement('x'.repeat(100_000)));
  });

  it('times are RFC 3339 UTC, whole seconds, strictly', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253402300799 }), (t) => {
        expect(parseTime(formatTime(t))).toBe(t);
      }),
    );
    for (const bad of ['2025-02-30T00:00:00Z', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00+00:00', '2025-01-01 00:00:00Z', '2025-1-01T00:00:00Z', '2025-01-01T24:00:00Z']) {
      expect(() => parseTime(bad), bad).toThrow(ProtocolError);
    }
  });
});

const evidence: fc.Arbitrary<Omit<EvidencePackage, 'type'>> = fc.record({
  fleetId: bytes32,
  keys: fc.record({ opaque: bytes32, hpke: bytes32, sign: bytes32 }),
  routes,
  measurement: fc.record({ method: fc.constant('bkv-hsm-js/v1'), digest: bytes32 }),
  members: fc.array(fc.record({ id: fc.uint8Array({ minLength: 16, maxLength: 16 }) }), { minLength: 1, maxLength: 5 }),
  policy: fc.record({ defaultMaxGuesses: fc.integer({ min: 1, max: 255 }), reRegistrationLimit: fc.integer({ min: 0, max: 255 }), quorum: fc.integer({ min: 1, max: 5 }) }),
  attestations: fc.constant([]),
});

describe('evidence packages', () => {
  it('round-trip', () => {
    fc.assert(
      fc.property(evidence, (e) => {
        expect(parseEvidence(formatEvidence(e))).toEqual({ type: EVIDENCE_TYPE, ...e });
      }),
    );
  });

  it('random bytes and JSON never crash the parser', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => onlyMalformed(() => parseEvidence(b))));
    fc.assert(fc.property(fc.jsonValue(), (j) => onlyMalformed(() => parseEvidence(utf8(JSON.stringify(j))))));
    onlyMalformed(() => parseEvidence(new Uint8Array(70_000)));
  });
});
