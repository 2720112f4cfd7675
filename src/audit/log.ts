/**
 * The auditor's view of a validator's log (DESIGN section 6, "Auditors"): with only the
 * validator's vkeys (and optionally the operator's and witnesses'), read the log over its
 * tlog-tiles interface and check the checkpoint, consistency with the checkpoint seen last time,
 * that the entries hash to the checkpoint's root, every entry's signatures, each operator's
 * chain (seq + 1, prev = previous leaf hash), the 30-day window, fleet ids, and the evidence
 * behind each digest. What changed from one seq to the next is reported as a key diff.
 */
import { bytesEqual, fromBase64, toBase64, toHex } from '../crypto/bytes.js';
import { verifyEvidence } from '../protocol/evidence.js';
import { readBounded } from '../protocol/read-bounded.js';
import { fleetIdOf } from '../protocol/fleet.js';
import { MAX_WINDOW_SECONDS, NO_PREVIOUS, parseSignedStatement, routesEqual, statementLeafHash, type FleetKeysStatement } from '../protocol/statement.js';
import {
  TILE_WIDTH,
  consistencyProofFromTiles,
  formatTilePath,
  leafHash,
  open,
  openCheckpoint,
  parseEntryBundle,
  rootFromLeafHashes,
  tileWidth,
  verifyConsistency,
  type HashTileId,
  type VerifierKey,
} from '../protocol/tlog/index.js';

export interface AuditLogOptions {
  /** The log's prefix URL. */
  readonly url: string;
  readonly origin: string;
  readonly logKey: VerifierKey;
  readonly attestationKey: VerifierKey;
  readonly operators?: readonly VerifierKey[];
  readonly witnesses?: readonly VerifierKey[];
  readonly quorum?: number;
  /** The checkpoint this auditor verified last time, if any. */
  readonly previous?: { readonly size: number; readonly root: Uint8Array; readonly note?: string };
  /** Fetch and verify every evidence package (from the validator's API beside the log). */
  readonly evidence?: boolean;
  readonly fetch?: typeof fetch;
}

export interface Finding {
  readonly index?: number;
  readonly problem: string;
}

export interface AuditLogReport {
  readonly size: number;
  readonly root: string;
  readonly checkpoint: string;
  readonly cosigners: readonly string[];
  readonly entries: number;
  /** What changed at each seq, per operator. */
  readonly changes: readonly string[];
  readonly findings: readonly Finding[];
  /** Set when the checkpoint is inconsistent with `previous`: both notes, proof of misbehaviour. */
  readonly inconsistent?: { readonly previous: string; readonly current: string; readonly reason: string };
}

const MAX_FETCH = 1024 * 1024;

function describeChange(prev: FleetKeysStatement | undefined, s: FleetKeysStatement): string {
  const head = `${s.operator} seq ${s.seq}: fleet ${toHex(s.fleetId).slice(0, 16)}`;
  if (!prev) return `${head} (first statement)`;
  const diffs: string[] = [];
  if (!bytesEqual(prev.fleetId, s.fleetId)) diffs.push(`fleet changed from ${toHex(prev.fleetId).slice(0, 16)}`);
  for (const role of ['opaque', 'hpke', 'sign'] as const) if (!bytesEqual(prev.keys[role], s.keys[role])) diffs.push(`key ${role} changed`);
  if (!routesEqual(prev.routes, s.routes)) diffs.push('routes changed');
  if (!bytesEqual(prev.measurement, s.measurement)) diffs.push(`measurement changed to sha256:${toHex(s.measurement).slice(0, 16)}`);
  if (!bytesEqual(prev.evidence, s.evidence)) diffs.push('evidence changed');
  return `${head}: ${diffs.length ? diffs.join(', ') : 'renewal, no key change'}`;
}

export async function auditLog(o: AuditLogOptions): Promise<AuditLogReport> {
  const doFetch = o.fetch ?? globalThis.fetch.bind(globalThis);
  const base = o.url.replace(/\/+$/, '');
  const get = async (path: string): Promise<Uint8Array> => {
    const res = await doFetch(`${base}/${path}`, { signal: AbortSignal.timeout(30_000) });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return readBounded(res, MAX_FETCH);
  };
  const findings: Finding[] = [];
  const note = new TextDecoder().decode(await get('checkpoint'));
  const opened = await openCheckpoint(note, { origin: o.origin, log: o.logKey, witnesses: [...(o.witnesses ?? [])] });
  const { treeSize: size, rootHash: root } = opened.checkpoint;
  const cosigners = [...new Set(opened.cosignatures.map((c) => c.name))];
  if (cosigners.length < (o.quorum ?? 0)) findings.push({ problem: `${cosigners.length} witness cosignatures, ${o.quorum} required` });
  const fetchTile = (t: HashTileId) => get(formatTilePath({ kind: 'hash', level: t.level, index: t.index, width: t.width }));

  // Consistency with what this auditor saw last time.
  let inconsistent: AuditLogReport['inconsistent'];
  const prev = o.previous;
  if (prev && prev.size > 0) {
    try {
      if (prev.size > size) throw new Error(`the log shrank from ${prev.size} to ${size} entries`);
      const proof = prev.size === size ? [] : await consistencyProofFromTiles(prev.size, size, fetchTile);
      verifyConsistency(prev.size, size, proof, prev.root, root);
    } catch (e) {
      inconsistent = { previous: prev.note ?? `${prev.size} ${toBase64(prev.root)}`, current: note, reason: (e as Error).message };
    }
  }

  // Every entry, and the tree they make.
  const entries: Uint8Array[] = [];
  for (let n = 0; n * TILE_WIDTH < size; n++) {
    const width = tileWidth(0, n, size);
    entries.push(...parseEntryBundle(await get(formatTilePath({ kind: 'entries', index: n, width })), width));
  }
  if (!bytesEqual(rootFromLeafHashes(entries.map(leafHash)), root)) findings.push({ problem: 'the entries do not hash to the checkpoint\'s root' });

  const heads = new Map<string, { statement: FleetKeysStatement; leaf: Uint8Array }>();
  const changes: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    let signed;
    try {
      signed = parseSignedStatement(entry);
    } catch (e) {
      findings.push({ index: i, problem: `not a statement: ${(e as Error).message}` });
      continue;
    }
    const s = signed.statement;
    const text = new TextDecoder().decode(entry);
    try {
      const v = await open(text, [o.attestationKey]);
      if (!v.verified.length) throw new Error();
    } catch {
      findings.push({ index: i, problem: 'no valid signature by the validator\'s attestation key' });
    }
    const op = o.operators?.find((k) => k.name === s.operator);
    if (o.operators && !op) findings.push({ index: i, problem: `statement by an unknown operator ${s.operator}` });
    if (op) {
      try {
        await open(text, [op]);
      } catch {
        findings.push({ index: i, problem: 'the operator\'s signature does not verify' });
      }
    }
    const head = heads.get(s.operator);
    if (s.seq !== (head?.statement.seq ?? 0) + 1) findings.push({ index: i, problem: `${s.operator}: seq ${s.seq} after ${head?.statement.seq ?? 0}` });
    if (!bytesEqual(s.prev, head?.leaf ?? NO_PREVIOUS)) findings.push({ index: i, problem: `${s.operator} seq ${s.seq}: prev is not the previous statement's leaf hash` });
    if (s.notAfter - s.notBefore > MAX_WINDOW_SECONDS || s.notAfter < s.notBefore) findings.push({ index: i, problem: `seq ${s.seq}: validity window outside policy` });
    if (!bytesEqual(fleetIdOf(s.keys), s.fleetId)) findings.push({ index: i, problem: `seq ${s.seq}: fleet id is not the hash of the keys` });
    if (o.evidence) {
      try {
        const ev = await get(`validator/v1/evidence/${toHex(s.evidence)}`);
        const r = verifyEvidence(ev, s);
        if (!r.ok) findings.push({ index: i, problem: `seq ${s.seq}: ${r.message}` });
      } catch (e) {
        findings.push({ index: i, problem: `seq ${s.seq}: evidence package not available (${(e as Error).message})` });
      }
    }
    changes.push(describeChange(head?.statement, s));
    heads.set(s.operator, { statement: s, leaf: statementLeafHash(text) });
  }
  return { size, root: toBase64(root), checkpoint: note, cosigners, entries: entries.length, changes, findings, ...(inconsistent ? { inconsistent } : {}) };
}

/** Reads a previous checkpoint note as the auditor stored it. */
export function previousFromNote(note: string): { size: number; root: Uint8Array; note: string } {
  const lines = note.split('\n');
  return { size: Number(lines[1]), root: fromBase64(lines[2] ?? ''), note };
}
