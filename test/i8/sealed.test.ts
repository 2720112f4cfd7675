/**
 * I8 for what the HSM reads back from outside its boundary or from its own platform: NVRAM slots,
 * sealed record leaves, and the sealed states a client hands back (registration state, login
 * state, session token). Garbage, truncations and single-byte changes must give null (the APIs'
 * refusal), never an exception and never a different value.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concatBytes } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/sha256.js';
import { Writer } from '../../src/protocol/encoding.js';
import { aesGcmSeal as aesGcmSealForTest } from '../../src/crypto/server.js';
import { OPAQUE_SIZES } from '../../src/crypto/opaque-sizes.js';
import { readNvram, writeNvram, encodeSlot as encodeNvramSlot } from '../../src/hsm/nvram.js';
import { NVRAM_SLOT_BYTES, type Nvram, type NvramSlot } from '../../src/hsm/platform.js';
import { decodeSlot, encodeSlot, LEAF_BYTES, openSlot, sealSlot, SLOT_PLAINTEXT_BYTES, type RecordSlot } from '../../src/hsm/record.js';
import { openLoginState, openRegisterState, openSessionToken, sealLoginState, sealRegisterState, sealSessionToken } from '../../src/hsm/states.js';
import { LIMITS } from '../../src/protocol/messages.js';
import { bytes, decodeOrRefuse, mutations, safeNat, varBytes } from './arbitraries.js';

const RUNS = { numRuns: 300 };

function memNvram(slots: [Uint8Array | null, Uint8Array | null] = [null, null]): Nvram {
  return {
    read: (s: NvramSlot) => slots[s],
    write: (s: NvramSlot, d: Uint8Array) => {
      slots[s] = d;
    },
  };
}

const position = fc.record({ index: safeNat, hash: bytes(32) });

describe('I8: NVRAM slot reader', () => {
  it('round-trips written positions; the higher valid seq wins', () => {
    fc.assert(
      fc.property(bytes(32), fc.array(position, { minLength: 1, maxLength: 5 }), (fleetId, positions) => {
        const nv = memNvram();
        let cur = readNvram(nv, fleetId);
        expect(cur).toBeNull();
        for (const p of positions) {
          cur = writeNvram(nv, cur, fleetId, p);
          const back = readNvram(nv, fleetId);
          expect(back).toEqual(cur);
        }
        expect(cur!.seq).toBe(positions.length);
      }),
      { numRuns: 100 },
    );
  });

  it('a slot is at most NVRAM_SLOT_BYTES', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), bytes(32), position, (seq, fleetId, p) => {
        expect(encodeNvramSlot(seq, fleetId, p).length).toBeLessThanOrEqual(NVRAM_SLOT_BYTES);
      }),
      { numRuns: 50 },
    );
  });

  it('never throws on garbage slots, and a damaged slot never wins', () => {
    const slotArb = fc.tuple(bytes(32), position, position).map(([fleetId, p1, p2]) => {
      const slots: [Uint8Array | null, Uint8Array | null] = [null, null];
      const nv = memNvram(slots);
      writeNvram(nv, writeNvram(nv, null, fleetId, p1), fleetId, p2);
      return { fleetId, p1, newest: slots[1]! };
    });
    fc.assert(
      fc.property(slotArb.chain((s) => mutations(fc.constant(s.newest)).map((m) => ({ ...s, m: m.m }))), ({ fleetId, p1, m }) => {
        // The newest slot (seq 2) is damaged: the reader must fall back to seq 1, never use it.
        const slots: [Uint8Array | null, Uint8Array | null] = [null, m.bytes];
        const nv = memNvram(slots);
        slots[0] = encodeNvramSlot(1, fleetId, p1);
        const st = readNvram(nv, fleetId);
        expect(st).toEqual({ seq: 1, slot: 0, fleetId, position: p1 });
      }),
      RUNS,
    );
  });

  it('treats random bytes, and checksummed garbage, as no slot', () => {
    fc.assert(
      fc.property(bytes(32), fc.option(fc.uint8Array({ maxLength: 200 })), fc.uint8Array({ maxLength: 120 }), (fleetId, raw, body) => {
        expect(readNvram(memNvram([raw, null]), fleetId)).toBeNull();
        // A checksum that matches but a body that is not a slot: still refused, not thrown.
        const framed = concatBytes(body, sha256(body));
        expect(readNvram(memNvram([framed, framed]), fleetId)).toBeNull();
      }),
      RUNS,
    );
  });

  it('refuses a slot of another fleet', () => {
    fc.assert(
      fc.property(bytes(32), bytes(32), position, (a, b, p) => {
        fc.pre(a.some((v, i) => v !== b[i]));
        expect(readNvram(memNvram([encodeNvramSlot(5, a, p), null]), b)).toBeNull();
      }),
      { numRuns: 50 },
    );
  });
});

const activeRecord = fc.record({
  state: fc.constant('active' as const),
  generation: safeNat,
  attempt: safeNat,
  finishedAttempt: safeNat,
  guessesUsed: fc.integer({ min: 0, max: 255 }),
  maxGuesses: fc.integer({ min: 0, max: 255 }),
  failuresSinceLastSuccess: fc.integer({ min: 0, max: 0xffffffff }),
  destructions: fc.integer({ min: 0, max: 0xffffffff }),
  registrationNonce: bytes(32),
  opaqueRecord: bytes(OPAQUE_SIZES.registrationRecord),
  wrappedKey: varBytes(LIMITS.wrappedKey),
});
const tombstone = fc.record({ state: fc.constant('tombstone' as const), generation: safeNat, attempt: safeNat, destructions: fc.integer({ min: 0, max: 0xffffffff }) });
const recordSlot: fc.Arbitrary<RecordSlot> = fc.oneof(activeRecord, tombstone);

describe('I8: record slots and sealed leaves', () => {
  it('round-trips slots, always padded to the fixed size', () => {
    fc.assert(
      fc.property(recordSlot, (s) => {
        const b = encodeSlot(s);
        expect(b.length).toBe(SLOT_PLAINTEXT_BYTES);
        expect(decodeSlot(b, s.generation)).toEqual(s);
      }),
      RUNS,
    );
  });

  it('decodeSlot throws nothing but a ProtocolError on random or damaged plaintext', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 600 }), mutations(recordSlot.map(encodeSlot)).map((m) => m.m.bytes)), safeNat, (b, g) => {
        decodeOrRefuse(() => decodeSlot(b, g));
      }),
      RUNS,
    );
  });

  const sealed = fc.record({ key: bytes(32), epoch: fc.integer({ min: 0, max: 0xffffffff }), fleetId: bytes(32), recordId: bytes(32), slot: recordSlot, nonce: bytes(12) }).map((x) => ({ ...x, leaf: sealSlot(x.key, x.epoch, x.fleetId, x.recordId, x.slot, x.nonce) }));

  it('round-trips sealed leaves of the fixed size', () => {
    fc.assert(
      fc.property(sealed, (x) => {
        expect(x.leaf.length).toBe(LEAF_BYTES);
        expect(openSlot(x.key, x.fleetId, x.recordId, x.leaf)).toEqual(x.slot);
      }),
      RUNS,
    );
  });

  it('openSlot returns null, never throws, for damaged leaves, other record ids and random bytes', () => {
    fc.assert(
      fc.property(sealed.chain((x) => mutations(fc.constant(x.leaf)).map((m) => ({ x, m: m.m }))), bytes(32), fc.uint8Array({ minLength: LEAF_BYTES, maxLength: LEAF_BYTES }), ({ x, m }, otherId, random) => {
        expect(openSlot(x.key, x.fleetId, x.recordId, m.bytes)).toBeNull();
        if (otherId.some((v, i) => v !== x.recordId[i])) expect(openSlot(x.key, x.fleetId, otherId, x.leaf)).toBeNull();
        expect(openSlot(x.key, x.fleetId, x.recordId, random)).toBeNull();
      }),
      RUNS,
    );
  });

  it('openSlot returns null for a leaf whose header generation is not a safe integer', () => {
    fc.assert(
      fc.property(sealed, fc.bigInt({ min: BigInt(Number.MAX_SAFE_INTEGER) + 1n, max: (1n << 64n) - 1n }), (x, g) => {
        const leaf = x.leaf.slice();
        new DataView(leaf.buffer, leaf.byteOffset, 12).setBigUint64(4, g);
        expect(openSlot(x.key, x.fleetId, x.recordId, leaf)).toBeNull();
      }),
      { numRuns: 50 },
    );
  });
});

describe('I8: sealed client states', () => {
  const key = bytes(32);
  const fleetId = bytes(32);
  const kinds = [
    {
      name: 'registration state',
      value: fc.record({ recordId: bytes(32), expectedGeneration: safeNat, nonce: bytes(32), mode: fc.constantFrom('register' as const, 'change' as const) }),
      seal: sealRegisterState as (k: Uint8Array, f: Uint8Array, s: never, n: Uint8Array) => Uint8Array,
      open: openRegisterState as (k: Uint8Array, f: Uint8Array, b: Uint8Array) => unknown,
    },
    {
      name: 'login state',
      value: fc.record({ recordId: bytes(32), generation: safeNat, attempt: safeNat, serverState: varBytes(512) }),
      seal: sealLoginState as (k: Uint8Array, f: Uint8Array, s: never, n: Uint8Array) => Uint8Array,
      open: openLoginState as (k: Uint8Array, f: Uint8Array, b: Uint8Array) => unknown,
    },
    {
      name: 'session token',
      value: fc.record({ recordId: bytes(32), generation: safeNat, attempt: safeNat, sessionOpKey: bytes(32) }),
      seal: sealSessionToken as (k: Uint8Array, f: Uint8Array, s: never, n: Uint8Array) => Uint8Array,
      open: openSessionToken as (k: Uint8Array, f: Uint8Array, b: Uint8Array) => unknown,
    },
  ];

  for (const k of kinds) {
    const sealedState = fc.record({ key, fleetId, s: k.value as fc.Arbitrary<unknown>, nonce: bytes(12) }).map((x) => ({ ...x, b: k.seal(x.key, x.fleetId, x.s as never, x.nonce) }));

    it(`${k.name}: round-trips, and fits the request's sealed-state limit`, () => {
      fc.assert(
        fc.property(sealedState, (x) => {
          expect(k.open(x.key, x.fleetId, x.b)).toEqual(x.s);
          expect(x.b.length).toBeLessThanOrEqual(LIMITS.sealedState);
        }),
        { numRuns: 150 },
      );
    });

    it(`${k.name}: random bytes, damage, another fleet or another state's key give null`, () => {
      fc.assert(
        fc.property(sealedState.chain((x) => mutations(fc.constant(x.b)).map((m) => ({ x, m: m.m }))), fc.uint8Array({ maxLength: 700 }), bytes(32), ({ x, m }, random, other) => {
          expect(k.open(x.key, x.fleetId, m.bytes)).toBeNull();
          expect(k.open(x.key, x.fleetId, random)).toBeNull();
          expect(k.open(other, x.fleetId, x.b)).toBeNull();
          expect(k.open(x.key, other, x.b)).toBeNull();
        }),
        { numRuns: 150 },
      );
    });

    it(`${k.name}: never opens as another kind of state under the same key`, () => {
      fc.assert(
        fc.property(sealedState, (x) => {
          for (const other of kinds) if (other !== k) expect(other.open(x.key, x.fleetId, x.b)).toBeNull();
        }),
        { numRuns: 100 },
      );
    });
  }

  it('a correctly sealed body that does not parse gives null, not an exception', () => {
    // Bodies sealed under the right key and AD but with a broken layout: as a compromised or
    // buggy sealer would produce. The opener must refuse, not throw.
    const labels = ['bkv/v1/register-state', 'bkv/v1/login-state', 'bkv/v1/session'];
    const openers = [openRegisterState, openLoginState, openSessionToken];
    fc.assert(
      fc.property(key, fleetId, fc.nat({ max: 2 }), fc.uint8Array({ maxLength: 120 }), bytes(12), (k, f, which, tail, nonce) => {
        const label = labels[which]!;
        const body = concatBytes(new Writer().label(label).finish(), tail);
        const ad = new Writer().label(label).fixed(f, 32).finish();
        const b = concatBytes(nonce, aesGcmSealForTest(k, nonce, body, ad));
        try {
          openers[which]!(k, f, b);
        } catch (e) {
          throw new Error(`opener threw ${(e as Error).name}`, { cause: e });
        }
      }),
      RUNS,
    );
  });
});
