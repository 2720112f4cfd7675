/**
 * Fleet-key statements (DESIGN section 6): what an operator says about one of its fleets, as the
 * text of a C2SP signed note, signed first by the operator and then by the validator:
 *
 *     backup-key-vault/fleet-keys/v1
 *     operator <operator key name>
 *     fleet <fleet id, 64 hex digits>
 *     seq <decimal, from 1>
 *     prev <base64 of the leaf hash of the operator's previous statement; 32 zero bytes for seq 1>
 *     not-before <RFC 3339 UTC time, whole seconds>
 *     not-after <RFC 3339 UTC time, whole seconds>
 *     route <4 hex digits>-<4 hex digits>          one line per range, ascending, disjoint
 *     evidence sha256:<64 hex digits>              the deployment evidence package
 *     measurement sha256:<64 hex digits>           the HSM code measurement
 *     key opaque ristretto255 <base64>
 *     key hpke x25519 <base64>
 *     key sign ed25519 <base64>
 *
 * The chain (`seq`, `prev`) is per operator: consecutive statements of one operator may name
 * different fleets, which is what lets an auditor print the key changes from one seq to the next.
 *
 * Parsing is strict: a text is accepted only if formatting what was parsed gives the same text
 * back, so each statement has exactly one encoding (the log holds the bytes that were signed).
 */
import { bytesEqual, concatBytes, fromBase64, fromHex, toBase64, toHex, utf8 } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { Writer } from './encoding.js';
import { ProtocolError } from './errors.js';
import type { FleetPublicKeys } from './fleet.js';
import type { RouteRange } from './ids.js';
import { formatNote, isValidKeyName, leafHash, parseNote } from './tlog/index.js';
import type { NoteSignature } from './tlog/index.js';

/** The first line of a statement: its type and version. */
export const STATEMENT_HEADER = 'backup-key-vault/fleet-keys/v1';
/** Domain separation of the fleet's countersignature (DESIGN section 6). */
export const COUNTERSIGN_LABEL = 'bkv/v1/countersign';
/** A statement's text is small; anything longer is not one. */
export const MAX_STATEMENT_BYTES = 4096;
/** A signed statement: text and two signature lines, well under the tlog-tiles entry limit. */
export const MAX_SIGNED_STATEMENT_BYTES = 8192;
export const MAX_ROUTE_RANGES = 64;
/** The policy maximum of a statement's validity window (DESIGN section 6: at most 30 days). */
export const MAX_WINDOW_SECONDS = 30 * 24 * 3600;
/** `prev` of an operator's first statement. */
export const NO_PREVIOUS = new Uint8Array(32);

/** The key lines, in their fixed order: role, algorithm. */
const KEY_LINES = [
  ['opaque', 'ristretto255'],
  ['hpke', 'x25519'],
  ['sign', 'ed25519'],
] as const;

export interface FleetKeysStatement {
  /** The operator's key name (its signature on the statement is under this name). */
  readonly operator: string;
  readonly fleetId: Uint8Array;
  readonly seq: number;
  /** Leaf hash of the operator's previous statement in the validator's log. */
  readonly prev: Uint8Array;
  /** POSIX seconds, inclusive. */
  readonly notBefore: number;
  /** POSIX seconds, inclusive. */
  readonly notAfter: number;
  readonly routes: readonly RouteRange[];
  /** SHA-256 of the deployment evidence package's bytes. */
  readonly evidence: Uint8Array;
  /** SHA-256 measurement of the HSM code (see docs/decisions.md, "HSM code measurement"). */
  readonly measurement: Uint8Array;
  readonly keys: FleetPublicKeys;
}

function malformed(message: string): ProtocolError {
  return new ProtocolError('Malformed', `statement: ${message}`);
}

// --- times ---

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
/** Years 1970..9999: what the 4-digit form can hold. */
const MAX_TIME = 253402300799;

/** RFC 3339 in UTC with whole seconds: `2025-01-31T12:00:00Z`. */
export function formatTime(seconds: number): string {
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > MAX_TIME) throw malformed('time out of range');
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

export function parseTime(s: string): number {
  if (!RFC3339.test(s)) throw malformed('time must be RFC 3339 UTC with whole seconds');
  const ms = Date.parse(s);
  // Date.parse rolls 02-30 over to March; the round trip catches that.
  if (!Number.isFinite(ms) || formatTime(ms / 1000) !== s) throw malformed('not a valid time');
  return ms / 1000;
}

// --- small fields ---

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const HEX64 = /^[0-9a-f]{64}$/;

function hash32Hex(s: string, what: string): Uint8Array {
  if (!s.startsWith('sha256:') || !HEX64.test(s.slice(7))) throw malformed(`${what} must be sha256:<64 lowercase hex digits>`);
  return fromHex(s.slice(7));
}

function base64Key(s: string, what: string): Uint8Array {
  let b: Uint8Array;
  try {
    b = fromBase64(s);
  } catch {
    throw malformed(`${what} is not base64`);
  }
  if (b.length !== 32) throw malformed(`${what} must be 32 bytes`);
  return b;
}

function hex4(v: number): string {
  return v.toString(16).padStart(4, '0');
}

/** Route ranges: 1..64 of them, each from <= to, ascending and disjoint. */
export function checkRoutes(routes: readonly RouteRange[]): void {
  if (routes.length < 1 || routes.length > MAX_ROUTE_RANGES) throw malformed(`1..${MAX_ROUTE_RANGES} route ranges`);
  let last = -1;
  for (const r of routes) {
    if (!Number.isInteger(r.from) || !Number.isInteger(r.to) || r.from < 0 || r.to > 0xffff || r.from > r.to) throw malformed('bad route range');
    if (r.from <= last) throw malformed('route ranges must be ascending and disjoint');
    last = r.to;
  }
}

export function routesEqual(a: readonly RouteRange[], b: readonly RouteRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.from === b[i]!.from && r.to === b[i]!.to);
}

export function fleetKeysEqual(a: FleetPublicKeys, b: FleetPublicKeys): boolean {
  return bytesEqual(a.opaque, b.opaque) && bytesEqual(a.hpke, b.hpke) && bytesEqual(a.sign, b.sign);
}

// --- the text ---

/** Writes a statement's note text. Throws `Malformed` for values the format cannot hold. */
export function formatStatement(s: FleetKeysStatement): string {
  if (!isValidKeyName(s.operator)) throw malformed('operator must be a valid key name');
  if (s.fleetId.length !== 32 || s.prev.length !== 32 || s.evidence.length !== 32 || s.measurement.length !== 32) throw malformed('hashes are 32 bytes');
  if (!Number.isSafeInteger(s.seq) || s.seq < 1) throw malformed('seq must be a positive integer');
  checkRoutes(s.routes);
  const lines = [
    STATEMENT_HEADER,
    `operator ${s.operator}`,
    `fleet ${toHex(s.fleetId)}`,
    `seq ${s.seq}`,
    `prev ${toBase64(s.prev)}`,
    `not-before ${formatTime(s.notBefore)}`,
    `not-after ${formatTime(s.notAfter)}`,
    ...s.routes.map((r) => `route ${hex4(r.from)}-${hex4(r.to)}`),
    `evidence sha256:${toHex(s.evidence)}`,
    `measurement sha256:${toHex(s.measurement)}`,
    ...KEY_LINES.map(([role, alg]) => {
      const k = s.keys[role];
      if (k.length !== 32) throw malformed(`key ${role} must be 32 bytes`);
      return `key ${role} ${alg} ${toBase64(k)}`;
    }),
  ];
  return lines.map((l) => `${l}\n`).join('');
}

function field(line: string | undefined, name: string): string {
  if (line === undefined || !line.startsWith(`${name} `)) throw malformed(`expected a "${name}" line`);
  return line.slice(name.length + 1);
}

/** Parses a statement's note text (see the module comment). Throws `Malformed`. */
export function parseStatement(text: string): FleetKeysStatement {
  if (utf8(text).length > MAX_STATEMENT_BYTES) throw malformed('too long');
  if (!text.endsWith('\n')) throw malformed('must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  let i = 0;
  if (lines[i++] !== STATEMENT_HEADER) throw malformed(`first line must be ${STATEMENT_HEADER}`);
  const operator = field(lines[i++], 'operator');
  if (!isValidKeyName(operator)) throw malformed('operator must be a valid key name');
  const fleetHex = field(lines[i++], 'fleet');
  if (!HEX64.test(fleetHex)) throw malformed('fleet must be 64 lowercase hex digits');
  const seqText = field(lines[i++], 'seq');
  if (!DECIMAL.test(seqText)) throw malformed('seq must be a canonical decimal');
  const seq = Number(seqText);
  if (!Number.isSafeInteger(seq) || seq < 1) throw malformed('seq must be a positive safe integer');
  const prev = base64Key(field(lines[i++], 'prev'), 'prev');
  const notBefore = parseTime(field(lines[i++], 'not-before'));
  const notAfter = parseTime(field(lines[i++], 'not-after'));
  const routes: RouteRange[] = [];
  while (lines[i]?.startsWith('route ')) {
    const m = /^([0-9a-f]{4})-([0-9a-f]{4})$/.exec(lines[i]!.slice(6));
    if (!m) throw malformed('route must be <4 hex>-<4 hex>');
    routes.push({ from: parseInt(m[1]!, 16), to: parseInt(m[2]!, 16) });
    i++;
    if (routes.length > MAX_ROUTE_RANGES) throw malformed('too many route ranges');
  }
  checkRoutes(routes);
  const evidence = hash32Hex(field(lines[i++], 'evidence'), 'evidence');
  const measurement = hash32Hex(field(lines[i++], 'measurement'), 'measurement');
  const keys: Partial<Record<'opaque' | 'hpke' | 'sign', Uint8Array>> = {};
  for (const [role, alg] of KEY_LINES) {
    keys[role] = base64Key(field(lines[i++], `key ${role} ${alg}`), `key ${role}`);
  }
  if (i !== lines.length) throw malformed('unexpected lines after the keys');
  const s: FleetKeysStatement = { operator, fleetId: fromHex(fleetHex), seq, prev, notBefore, notAfter, routes, evidence, measurement, keys: keys as FleetPublicKeys };
  // One encoding per statement: anything the parser tolerated but the formatter would not write
  // (a non-canonical base64, say) is refused here.
  if (formatStatement(s) !== text) throw malformed('not in canonical form');
  return s;
}

// --- the signed statement: note with the operator's signature first, then the validator's ---

export interface SignedStatement {
  readonly text: string;
  readonly statement: FleetKeysStatement;
  readonly operatorSignature: NoteSignature;
  /** Absent until the validator has signed. */
  readonly validatorSignature?: NoteSignature;
}

/**
 * Parses (without verifying) a statement note: the statement text, then one signature line (the
 * operator's, as submitted) or two (operator first, then the validator's, as logged). The
 * operator's line must carry the name the statement gives as `operator`.
 */
export function parseSignedStatement(input: string | Uint8Array): SignedStatement {
  const size = typeof input === 'string' ? utf8(input).length : input.length;
  if (size > MAX_SIGNED_STATEMENT_BYTES) throw malformed('signed statement too long');
  const note = parseNote(input);
  const statement = parseStatement(note.text);
  if (note.signatures.length < 1 || note.signatures.length > 2) throw malformed('a statement carries the operator\'s signature and at most the validator\'s');
  const [operatorSignature, validatorSignature] = note.signatures as [NoteSignature, NoteSignature | undefined];
  if (operatorSignature.name !== statement.operator) throw malformed('the first signature must be the operator\'s');
  return validatorSignature === undefined
    ? { text: note.text, statement, operatorSignature }
    : { text: note.text, statement, operatorSignature, validatorSignature };
}

/** Writes a signed statement note: the operator's line first (DESIGN section 6). */
export function formatSignedStatement(s: SignedStatement): string {
  const sigs = s.validatorSignature ? [s.operatorSignature, s.validatorSignature] : [s.operatorSignature];
  return formatNote({ text: s.text, signatures: sigs });
}

/** The log entry of a signed statement is its note's bytes; RFC 6962 leaf hash of those. */
export function statementLeafHash(signedNote: string): Uint8Array {
  return leafHash(utf8(signedNote));
}

/** The signature bytes as they appear in a note line: key ID (big-endian) || signature. */
export function signatureLineBytes(sig: NoteSignature): Uint8Array {
  const id = Uint8Array.of(sig.keyId >>> 24, (sig.keyId >>> 16) & 0xff, (sig.keyId >>> 8) & 0xff, sig.keyId & 0xff);
  return concatBytes(id, sig.signature);
}

/**
 * What the fleet signs with its `sign` key to countersign a validated statement (DESIGN section
 * 6): the label, the fleet id, SHA-256 of the statement text, and the validator's signature (its
 * key name and line bytes), so that one countersignature endorses one validator attestation.
 */
export function countersignInput(fleetId: Uint8Array, statementText: string, validatorSignature: NoteSignature): Uint8Array {
  return new Writer()
    .label(COUNTERSIGN_LABEL)
    .fixed(fleetId, 32)
    .fixed(sha256(utf8(statementText)), 32)
    .string(validatorSignature.name)
    .bytes(signatureLineBytes(validatorSignature))
    .finish();
}
