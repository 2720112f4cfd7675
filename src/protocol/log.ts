/**
 * Log entries, NVRAM positions and capture statements (DESIGN section 5). The encodings live in
 * protocol/ because agents and storage handle them too; only the HSM holds the keys that MAC them.
 */
import { Reader, Writer } from './encoding.js';
import { PROTOCOL_VERSION } from './labels.js';
import { sha256 } from '../crypto/sha256.js';

export const MEMBER_ID_BYTES = 16;

export interface LogEntryBody {
  version: number;
  index: number;
  /** Hash of the previous entry; for genesis, the fleet id. */
  prev: Uint8Array;
  /** Root of the record tree after this entry (binds fleet id and log id). */
  root: Uint8Array;
  /** Digest of the requests applied in this entry's batch. */
  batchDigest: Uint8Array;
  /** Member id of the leader that proposed it. */
  leader: Uint8Array;
}

export interface LogEntry extends LogEntryBody {
  mac: Uint8Array;
}

const ENTRY_LABEL = 'bkv/v1/log-entry';

/** The bytes the entry MAC covers: label, fleet id, then every field. */
export function entryMacInput(fleetId: Uint8Array, e: LogEntryBody): Uint8Array {
  return new Writer().label(ENTRY_LABEL).fixed(fleetId, 32).u16(e.version).u64(e.index).fixed(e.prev, 32).fixed(e.root, 32).fixed(e.batchDigest, 32).fixed(e.leader, MEMBER_ID_BYTES).finish();
}

export function encodeEntry(e: LogEntry): Uint8Array {
  return new Writer().label(ENTRY_LABEL).u16(e.version).u64(e.index).fixed(e.prev, 32).fixed(e.root, 32).fixed(e.batchDigest, 32).fixed(e.leader, MEMBER_ID_BYTES).fixed(e.mac, 32).finish();
}

export function decodeEntry(b: Uint8Array): LogEntry {
  const r = new Reader(b, 256).expectLabel(ENTRY_LABEL);
  const e: LogEntry = { version: r.u16(), index: r.u64(), prev: r.fixed(32), root: r.fixed(32), batchDigest: r.fixed(32), leader: r.fixed(MEMBER_ID_BYTES), mac: r.fixed(32) };
  r.done();
  return e;
}

/** An entry's hash: what the next entry's prev and every position name. */
export function entryHash(encoded: Uint8Array): Uint8Array {
  return sha256(encoded);
}

export interface Position {
  index: number;
  hash: Uint8Array;
}

/** A member's word that it has persisted a position: MAC(capture subkey, member id || position). */
export interface Statement {
  member: Uint8Array;
  index: number;
  hash: Uint8Array;
  mac: Uint8Array;
}

const STATEMENT_LABEL = 'bkv/v1/capture-statement';

export function statementMacInput(fleetId: Uint8Array, member: Uint8Array, p: Position): Uint8Array {
  return new Writer().label(STATEMENT_LABEL).fixed(fleetId, 32).fixed(member, MEMBER_ID_BYTES).u64(p.index).fixed(p.hash, 32).finish();
}

export function encodeStatement(s: Statement): Uint8Array {
  return new Writer().label(STATEMENT_LABEL).fixed(s.member, MEMBER_ID_BYTES).u64(s.index).fixed(s.hash, 32).fixed(s.mac, 32).finish();
}

export function decodeStatement(b: Uint8Array): Statement {
  const r = new Reader(b, 256).expectLabel(STATEMENT_LABEL);
  const s = { member: r.fixed(MEMBER_ID_BYTES), index: r.u64(), hash: r.fixed(32), mac: r.fixed(32) };
  r.done();
  return s;
}

/** Statements for one (index, hash) from a majority of distinct members commit it. */
export type Certificate = Statement[];

export { PROTOCOL_VERSION };
