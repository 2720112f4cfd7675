/**
 * NVRAM slots (DESIGN section 5): {seq, fleet id, position, checksum}. The valid slot with the
 * higher seq wins; with no valid slot the HSM refuses the fleet. Writes alternate between the two
 * slots, so a crash during a write leaves the other slot intact.
 */
import { Reader, Writer } from '../protocol/encoding.js';
import { bytesEqual } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import type { Position } from '../protocol/log.js';
import type { Nvram, NvramSlot } from './platform.js';
import { NVRAM_SLOT_BYTES } from './platform.js';

const LABEL = 'bkv/v1/nvram';

export interface NvramState {
  seq: number;
  slot: NvramSlot;
  fleetId: Uint8Array;
  position: Position;
}

function body(seq: number, fleetId: Uint8Array, p: Position): Uint8Array {
  return new Writer().label(LABEL).u64(seq).fixed(fleetId, 32).u64(p.index).fixed(p.hash, 32).finish();
}

export function encodeSlot(seq: number, fleetId: Uint8Array, p: Position): Uint8Array {
  const b = body(seq, fleetId, p);
  const out = new Writer().fixed(b, b.length).fixed(sha256(b), 32).finish();
  if (out.length > NVRAM_SLOT_BYTES) throw new Error('NVRAM slot overflow');
  return out;
}

function decodeSlot(data: Uint8Array | null): { seq: number; fleetId: Uint8Array; position: Position } | null {
  if (!data || data.length < 32) return null;
  const b = data.subarray(0, data.length - 32);
  if (!bytesEqual(sha256(b), data.subarray(data.length - 32))) return null;
  try {
    const r = new Reader(b).expectLabel(LABEL);
    const v = { seq: r.u64(), fleetId: r.fixed(32), position: { index: r.u64(), hash: r.fixed(32) } };
    r.done();
    return v;
  } catch {
    return null;
  }
}

/** Reads both slots; the valid one with the higher seq wins. */
export function readNvram(nvram: Nvram, fleetId: Uint8Array): NvramState | null {
  let best: NvramState | null = null;
  for (const slot of [0, 1] as const) {
    const v = decodeSlot(nvram.read(slot));
    if (!v || !bytesEqual(v.fleetId, fleetId)) continue;
    if (!best || v.seq > best.seq) best = { ...v, slot };
  }
  return best;
}

/** Writes the slot that does not hold the current state. */
export function writeNvram(nvram: Nvram, current: NvramState | null, fleetId: Uint8Array, position: Position): NvramState {
  const seq = (current?.seq ?? 0) + 1;
  const slot: NvramSlot = current?.slot === 0 ? 1 : 0;
  nvram.write(slot, encodeSlot(seq, fleetId, position));
  return { seq, slot, fleetId, position };
}
