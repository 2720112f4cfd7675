/**
 * The outer request envelope (DESIGN section 4, "Channel"): what the front end and agents see.
 * Everything else is HPKE ciphertext to the fleet's key.
 */
import { concatBytes, utf8 } from '../crypto/bytes.js';
import { Writer } from './encoding.js';
import { LABEL, PROTOCOL_VERSION } from './labels.js';
import { messageTypeCode, type MessageType } from './messages.js';

export const MAX_CIPHERTEXT = 4096 + 16;

export interface RequestEnvelope {
  version: number;
  type: MessageType;
  /** 2-byte routing hint: prefix of SHA-256("bkv/v1/route" || user id). */
  hint: Uint8Array;
  /** Account tag t = SHA-256("bkv/v1/account" || user id). */
  tag: Uint8Array;
  /** HPKE encapsulated key. */
  enc: Uint8Array;
  ciphertext: Uint8Array;
}

/** info = "bkv/v1" || fleet id. */
export function channelInfo(fleetId: Uint8Array): Uint8Array {
  return concatBytes(utf8(LABEL.channelInfo), fleetId);
}

/** AAD = message type || version || routing hint || account tag, under its own label. */
export function requestAad(env: Pick<RequestEnvelope, 'type' | 'version' | 'hint' | 'tag'>): Uint8Array {
  return new Writer().label(LABEL.requestAad).u8(messageTypeCode(env.type)).u16(env.version).fixed(env.hint, 2).fixed(env.tag, 32).finish();
}

export { PROTOCOL_VERSION };
