/**
 * The validation bundle (DESIGN section 6): what a fleet returns, to a request that carries no
 * user data, so that a client can learn and verify its keys.
 *
 *     {
 *       "type": "backup-key-vault/bundle/v1",
 *       "statement": "<signed note: statement text, operator signature, validator signature>",
 *       "countersignature": "<base64: the fleet's Ed25519 signature over countersignInput>",
 *       "proof": "<c2sp.org/tlog-proof@v1 text: index, inclusion proof, checkpoint with cosignatures>",
 *       "consistency": { "size1": m, "size2": n, "proof": ["<base64 hash>", ...] }   optional
 *     }
 *
 * `consistency` is present when the client asked for a proof from a checkpoint it already holds
 * (`?consistency-from=<size>`) to the bundle's checkpoint, in whichever direction they lie.
 * Nothing here is trusted until `client/bundle.ts` has verified it.
 */
import { fromBase64, toBase64, utf8 } from '../crypto/bytes.js';
import { ProtocolError } from './errors.js';
import { parseSignedStatement, type SignedStatement } from './statement.js';
import { HASH_SIZE, parseTlogProof, type TlogProof } from './tlog/index.js';

export const BUNDLE_TYPE = 'backup-key-vault/bundle/v1';
export const MAX_BUNDLE_BYTES = 64 * 1024;
/** RFC 9162: a consistency proof has at most about 2 log2(n) nodes; 63 per tlog-witness. */
export const MAX_CONSISTENCY_NODES = 126;

export interface ConsistencyProof {
  readonly size1: number;
  readonly size2: number;
  readonly proof: readonly Uint8Array[];
}

export interface Bundle {
  /** The statement note, verbatim (it is the log entry). */
  readonly statement: string;
  /** Absent only in a bundle that the client must refuse (kept so that it can say why). */
  readonly countersignature?: Uint8Array;
  /** The tlog-proof, verbatim. */
  readonly proof: string;
  readonly consistency?: ConsistencyProof;
}

export interface ParsedBundle extends Bundle {
  readonly signed: SignedStatement;
  readonly tlogProof: TlogProof;
}

function bad(message: string): ProtocolError {
  return new ProtocolError('Malformed', `bundle: ${message}`);
}

function size(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a non-negative integer`);
  return v;
}

export function bundleToJson(b: Bundle): Record<string, unknown> {
  const j: Record<string, unknown> = { type: BUNDLE_TYPE, statement: b.statement };
  if (b.countersignature) j.countersignature = toBase64(b.countersignature);
  j.proof = b.proof;
  if (b.consistency) j.consistency = { size1: b.consistency.size1, size2: b.consistency.size2, proof: b.consistency.proof.map(toBase64) };
  return j;
}

/** Reads a bundle from parsed JSON, strictly; parses the statement note and the proof. */
export function parseBundleJson(json: unknown): ParsedBundle {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('not an object');
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['type', 'statement', 'countersignature', 'proof', 'consistency'].includes(k)) throw bad(`unknown field ${k}`);
  if (o.type !== BUNDLE_TYPE) throw bad(`type must be ${BUNDLE_TYPE}`);
  if (typeof o.statement !== 'string' || typeof o.proof !== 'string') throw bad('statement and proof must be strings');
  if (utf8(o.statement).length + utf8(o.proof).length > MAX_BUNDLE_BYTES) throw new ProtocolError('TooLarge', 'bundle too large');
  let countersignature: Uint8Array | undefined;
  if (o.countersignature !== undefined) {
    if (typeof o.countersignature !== 'string') throw bad('countersignature must be base64');
    try {
      countersignature = fromBase64(o.countersignature);
    } catch {
      throw bad('countersignature is not base64');
    }
    if (countersignature.length !== 64) throw bad('countersignature must be 64 bytes');
  }
  const signed = parseSignedStatement(o.statement);
  const tlogProof = parseTlogProof(o.proof);
  let consistency: ConsistencyProof | undefined;
  if (o.consistency !== undefined) {
    const c = o.consistency as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) throw bad('consistency must be an object');
    for (const k of Object.keys(c)) if (!['size1', 'size2', 'proof'].includes(k)) throw bad(`unknown consistency field ${k}`);
    if (!Array.isArray(c.proof) || c.proof.length > MAX_CONSISTENCY_NODES) throw bad('consistency proof must be a list of hashes');
    const proof = c.proof.map((h: unknown) => {
      if (typeof h !== 'string') throw bad('consistency proof hash must be base64');
      let b: Uint8Array;
      try {
        b = fromBase64(h);
      } catch {
        throw bad('consistency proof hash must be base64');
      }
      if (b.length !== HASH_SIZE) throw bad('consistency proof hash must be 32 bytes');
      return b;
    });
    consistency = { size1: size(c.size1, 'size1'), size2: size(c.size2, 'size2'), proof };
  }
  return {
    statement: o.statement,
    proof: o.proof,
    signed,
    tlogProof,
    ...(countersignature ? { countersignature } : {}),
    ...(consistency ? { consistency } : {}),
  };
}

/** Parses a bundle from its JSON text or bytes (size-limited first). */
export function parseBundle(input: string | Uint8Array): ParsedBundle {
  const bytes = typeof input === 'string' ? utf8(input) : input;
  if (bytes.length > MAX_BUNDLE_BYTES + 4096) throw new ProtocolError('TooLarge', 'bundle too large');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw bad('not UTF-8 JSON');
  }
  return parseBundleJson(json);
}

export function formatBundle(b: Bundle): string {
  return `${JSON.stringify(bundleToJson(b), null, 2)}\n`;
}

export type { SignedStatement };
