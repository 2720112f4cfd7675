/**
 * Record slots (DESIGN section 4, "Record id" and "Record epochs"). A slot is sealed under the
 * current record-epoch key and stored as a fixed-size tree leaf, whether it is an active record
 * or a tombstone, so storage cannot tell them apart by size.
 */
import { Reader, Writer } from '../protocol/encoding.js';
import { ProtocolError } from '../protocol/errors.js';
import { aesGcmOpen, aesGcmSeal, AES_GCM_NONCE } from '../crypto/server.js';
import { OPAQUE_SIZES } from '../crypto/opaque-sizes.js';
import { LIMITS } from '../protocol/messages.js';

export interface ActiveRecord {
  state: 'active';
  generation: number;
  /** Number of the latest counted login attempt; never restarts (I1a). */
  attempt: number;
  /** Highest attempt whose KE3 was consumed (succeeded or failed). */
  finishedAttempt: number;
  guessesUsed: number;
  maxGuesses: number;
  failuresSinceLastSuccess: number;
  destructions: number;
  /** The per-registration random value in the OPAQUE credential identifier (I2). */
  registrationNonce: Uint8Array;
  opaqueRecord: Uint8Array;
  wrappedKey: Uint8Array;
}

export interface Tombstone {
  state: 'tombstone';
  generation: number;
  attempt: number;
  destructions: number;
}

export type RecordSlot = ActiveRecord | Tombstone;

const SLOT_LABEL = 'bkv/v1/record-slot';
const LEAF_AD_LABEL = 'bkv/v1/record-leaf';
/** Fixed plaintext size of every slot: an active record with the largest W fits. */
export const SLOT_PLAINTEXT_BYTES = 512;

export function encodeSlot(s: RecordSlot): Uint8Array {
  const w = new Writer().label(SLOT_LABEL);
  if (s.state === 'active') {
    w.u8(1).u64(s.attempt).u64(s.finishedAttempt).u8(s.guessesUsed).u8(s.maxGuesses).u32(s.failuresSinceLastSuccess).u32(s.destructions);
    w.fixed(s.registrationNonce, 32).fixed(s.opaqueRecord, OPAQUE_SIZES.registrationRecord).bytes(s.wrappedKey);
  } else {
    w.u8(2).u64(s.attempt).u32(s.destructions);
  }
  const b = w.finish();
  if (b.length > SLOT_PLAINTEXT_BYTES) throw new Error('record slot too large');
  const padded = new Uint8Array(SLOT_PLAINTEXT_BYTES);
  padded.set(b);
  return padded;
}

export function decodeSlot(padded: Uint8Array, generation: number): RecordSlot {
  if (padded.length !== SLOT_PLAINTEXT_BYTES) throw new ProtocolError('Internal', 'record slot has the wrong size');
  const r = new Reader(padded);
  r.expectLabel(SLOT_LABEL);
  const kind = r.u8();
  if (kind === 1) {
    return {
      state: 'active',
      generation,
      attempt: r.u64(),
      finishedAttempt: r.u64(),
      guessesUsed: r.u8(),
      maxGuesses: r.u8(),
      failuresSinceLastSuccess: r.u32(),
      destructions: r.u32(),
      registrationNonce: r.fixed(32),
      opaqueRecord: r.fixed(OPAQUE_SIZES.registrationRecord),
      wrappedKey: r.bytes(LIMITS.wrappedKey),
    };
  }
  if (kind === 2) return { state: 'tombstone', generation, attempt: r.u64(), destructions: r.u32() };
  throw new ProtocolError('Internal', 'unknown record slot kind');
}

function leafAd(fleetId: Uint8Array, recordId: Uint8Array, epoch: number, generation: number): Uint8Array {
  return new Writer().label(LEAF_AD_LABEL).fixed(fleetId, 32).fixed(recordId, 32).u32(epoch).u64(generation).finish();
}

/** Leaf = epoch (u32) || generation (u64) || nonce || AEAD(epoch key, slot, AD = fleet || record id || epoch || generation). */
export function sealSlot(epochKey: Uint8Array, epoch: number, fleetId: Uint8Array, recordId: Uint8Array, slot: RecordSlot, nonce: Uint8Array): Uint8Array {
  const header = new Writer().u32(epoch).u64(slot.generation).finish();
  const ct = aesGcmSeal(epochKey, nonce, encodeSlot(slot), leafAd(fleetId, recordId, epoch, slot.generation));
  return new Writer().fixed(header, 12).fixed(nonce, AES_GCM_NONCE).fixed(ct, ct.length).finish();
}

export const LEAF_BYTES = 12 + AES_GCM_NONCE + SLOT_PLAINTEXT_BYTES + 16;

export function leafEpoch(leaf: Uint8Array): number {
  return new DataView(leaf.buffer, leaf.byteOffset, 4).getUint32(0);
}

/** Opens a leaf; a leaf that does not authenticate means storage is corrupt or hostile. */
export function openSlot(epochKey: Uint8Array, fleetId: Uint8Array, recordId: Uint8Array, leaf: Uint8Array): RecordSlot | null {
  if (leaf.length !== LEAF_BYTES) return null;
  const dv = new DataView(leaf.buffer, leaf.byteOffset, 12);
  const epoch = dv.getUint32(0);
  const generation64 = dv.getBigUint64(4);
  // Not a generation this code could have sealed (and leafAd would throw on it): refuse.
  if (generation64 > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  const generation = Number(generation64);
  const nonce = leaf.subarray(12, 12 + AES_GCM_NONCE);
  const pt = aesGcmOpen(epochKey, nonce, leaf.subarray(12 + AES_GCM_NONCE), leafAd(fleetId, recordId, epoch, generation));
  if (!pt) return null;
  try {
    return decodeSlot(pt, generation);
  } catch {
    return null;
  }
}
