/** Identifiers derived from a user id (DESIGN section 4, "Channel" and "Routing"). */
import { utf8 } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { LABEL } from './labels.js';
import { ProtocolError } from './errors.js';

export const MAX_USER_ID_BYTES = 256;

export function validateUserId(userId: string): Uint8Array {
  // A lone surrogate would encode as U+FFFD: two user ids would share one account.
  const wellFormed = (userId as string & { isWellFormed?: () => boolean }).isWellFormed?.() ?? true;
  if (!wellFormed) throw new ProtocolError('BadRequest', 'user id is not well-formed Unicode');
  const b = utf8(userId);
  if (b.length === 0 || b.length > MAX_USER_ID_BYTES) throw new ProtocolError('BadRequest', `user id must be 1..${MAX_USER_ID_BYTES} bytes`);
  return b;
}

/** 2-byte prefix of SHA-256("bkv/v1/route" || user id): picks the fleet and the shard. */
export function routingHint(userId: string): Uint8Array {
  return sha256(utf8(LABEL.route), validateUserId(userId)).slice(0, 2);
}

export function routeValue(hint: Uint8Array): number {
  return (hint[0]! << 8) | hint[1]!;
}

/** t = SHA-256("bkv/v1/account" || user id): what the front end checks against the app session. */
export function accountTag(userId: string): Uint8Array {
  return sha256(utf8(LABEL.account), validateUserId(userId));
}

export interface RouteRange {
  /** Inclusive bounds on the 16-bit routing hint. */
  from: number;
  to: number;
}

export function inRanges(hint: Uint8Array, ranges: readonly RouteRange[]): boolean {
  const v = routeValue(hint);
  return ranges.some((r) => v >= r.from && v <= r.to);
}
