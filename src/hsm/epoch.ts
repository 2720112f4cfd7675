/**
 * Record epochs (DESIGN section 4): records are sealed under `record-epoch/<n>`; the fleet
 * ratchets to n+1 on a schedule, re-seals live records, and erases key n once no record is sealed
 * under it, so copies of destroyed records in old storage backups become unreadable (I3).
 *
 * The fleet keeps its epoch accounting in the record tree itself, in one leaf at a reserved id:
 * the current epoch, when it began, and how many leaves are sealed under each epoch. Every batch
 * that writes leaves updates it, so a new leader reads it (checked against the root it trusts),
 * and the count, not the agent's word, says when a sweep is complete.
 */
import { Reader, Writer } from '../protocol/encoding.js';
import { sha256 } from '../crypto/sha256.js';
import { utf8 } from '../crypto/bytes.js';
import { aesGcmOpen, aesGcmSeal, AES_GCM_NONCE } from '../crypto/server.js';
import { concatBytes } from '../crypto/bytes.js';

/** Record ids are HMAC outputs; this SHA-256 of a label is not one anyone can hit. */
export const EPOCH_STATE_ID = sha256(utf8('bkv/v1/epoch-state-id'));

export interface EpochState {
  current: number;
  startedAt: number;
  /** Leaves sealed under each epoch still in use. */
  counts: Map<number, number>;
  /** False for a tree that held records before accounting began: nothing is ever erased then. */
  tracked: boolean;
}

const LABEL = 'bkv/v1/epoch-state';

function ad(fleetId: Uint8Array): Uint8Array {
  return new Writer().label(LABEL).fixed(fleetId, 32).finish();
}

export function sealEpochState(key: Uint8Array, fleetId: Uint8Array, st: EpochState, nonce: Uint8Array): Uint8Array {
  const live = [...st.counts.entries()].filter(([, n]) => n > 0).sort(([a], [b]) => a - b);
  const w = new Writer().label(LABEL).u32(st.current).u64(st.startedAt).bool(st.tracked).u16(live.length);
  for (const [e, n] of live) w.u32(e).u64(n);
  return concatBytes(nonce, aesGcmSeal(key, nonce, w.finish(), ad(fleetId)));
}

export function openEpochState(key: Uint8Array, fleetId: Uint8Array, leaf: Uint8Array): EpochState | null {
  if (leaf.length < AES_GCM_NONCE + 16) return null;
  const pt = aesGcmOpen(key, leaf.subarray(0, AES_GCM_NONCE), leaf.subarray(AES_GCM_NONCE), ad(fleetId));
  if (!pt) return null;
  try {
    const r = new Reader(pt).expectLabel(LABEL);
    const current = r.u32();
    const startedAt = r.u64();
    const tracked = r.bool();
    const counts = new Map<number, number>();
    const n = r.u16();
    for (let i = 0; i < n; i++) counts.set(r.u32(), r.u64());
    r.done();
    return { current, startedAt, counts, tracked };
  } catch {
    return null;
  }
}

export function cloneEpochState(st: EpochState): EpochState {
  return { ...st, counts: new Map(st.counts) };
}
