/**
 * Storage accepts an entry only where it extends the stored tail: index - 1 exists and its hash is
 * the new entry's prev. Safety never depends on this (the HSMs check every link); it keeps a
 * hostile or confused writer from wedging the stored log with an entry no member can capture.
 */
import { decodeEntry, entryHash } from '../protocol/log.js';
import { bytesEqual } from '../crypto/bytes.js';

export function extendsTail(previous: Uint8Array | undefined, entry: Uint8Array, index: number): boolean {
  if (index === 0) return true;
  if (!previous) return false;
  try {
    return bytesEqual(decodeEntry(entry).prev, entryHash(previous));
  } catch {
    return false;
  }
}
