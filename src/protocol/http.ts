/** JSON forms of the envelope and replies on the HTTP edge (front end and agents). */
import { fromBase64, toBase64 } from '../crypto/bytes.js';
import type { RequestEnvelope } from './channel.js';
import { isMessageType } from './messages.js';
import { ProtocolError, isErrorCode, type ErrorCode } from './errors.js';

export interface EnvelopeJson {
  v: number;
  type: string;
  hint: string;
  tag: string;
  enc: string;
  ct: string;
}

export interface ReplyJson {
  ct: string;
}

export interface ErrorJson {
  error: { code: ErrorCode; message: string };
}

export function envelopeToJson(e: RequestEnvelope): EnvelopeJson {
  return { v: e.version, type: e.type, hint: toBase64(e.hint), tag: toBase64(e.tag), enc: toBase64(e.enc), ct: toBase64(e.ciphertext) };
}

function field(s: string, name: string, length?: number): Uint8Array {
  let b: Uint8Array;
  try {
    b = fromBase64(s);
  } catch {
    throw new ProtocolError('Malformed', `${name} is not base64`);
  }
  if (length !== undefined && b.length !== length) throw new ProtocolError('Malformed', `${name} must be ${length} bytes`);
  return b;
}

export function envelopeFromJson(j: EnvelopeJson): RequestEnvelope {
  if (!isMessageType(j.type)) throw new ProtocolError('UnknownMessageType', 'unknown message type');
  return { version: j.v, type: j.type, hint: field(j.hint, 'hint', 2), tag: field(j.tag, 'tag', 32), enc: field(j.enc, 'enc', 32), ciphertext: field(j.ct, 'ct') };
}

export function parseErrorJson(v: unknown): { code: ErrorCode; message: string } | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const e = (v as { error?: { code?: unknown; message?: unknown } }).error;
  if (!e || !isErrorCode(e.code)) return undefined;
  return { code: e.code, message: typeof e.message === 'string' ? e.message.slice(0, 500) : '' };
}

/** The one place error codes become HTTP status codes. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case 'Malformed':
    case 'BadRequest':
    case 'UnknownMessageType':
    case 'UnsupportedVersion':
      return 400;
    case 'Unauthorized':
      return 401;
    case 'AccountMismatch':
      return 403;
    case 'TooLarge':
      return 413;
    case 'RateLimited':
      return 429;
    case 'OutOfRange':
    case 'WrongFleet':
      return 421;
    case 'NotLeader':
    case 'Unavailable':
    case 'Halted':
      return 503;
    case 'OutcomeUnknown':
      return 504;
    default:
      return 500;
  }
}
