/**
 * A transparency-log witness (c2sp.org/tlog-witness, `add-checkpoint`): for each log it knows
 * (origin and key), it keeps the latest checkpoint it cosigned, and cosigns a new one only if a
 * consistency proof shows that it extends that one. Cosignatures are `cosignature/v1`
 * (c2sp.org/tlog-cosignature), with the witness's timestamp.
 *
 * The answer to each request is a closed union of the spec's outcomes; the HTTP layer
 * (server.ts) maps it to status codes. The check of the old size and the update of the stored
 * checkpoint run in one synchronous SQLite transaction, so two concurrent requests cannot roll
 * the witness back (tlog-witness, the race at the end of "add-checkpoint").
 */
import type Database from 'better-sqlite3';
import { bytesEqual, fromBase64, toBase64, utf8 } from '../crypto/bytes.js';
import { ProtocolError } from '../protocol/errors.js';
import { HASH_SIZE, TlogError, formatSignatureLine, openCheckpoint, parseCheckpoint, parseNote, verifyConsistency } from '../protocol/tlog/index.js';
import type { Checkpoint, NoteVerifier, SignerKey } from '../protocol/tlog/index.js';

/** tlog-witness: "The client MUST NOT send more than 63 consistency proof lines." */
export const MAX_PROOF_LINES = 63;
export const MAX_ADD_CHECKPOINT_BYTES = 64 * 1024;
/** Kept evidence of refused consistency proofs, per log (tlog-witness: the witness MAY log them). */
const MAX_KEPT_REFUSALS = 100;

export interface AddCheckpointRequest {
  readonly oldSize: number;
  readonly proof: readonly Uint8Array[];
  /** The checkpoint note, verbatim. */
  readonly checkpoint: string;
}

export type AddCheckpointResult =
  /** 200: the cosignature lines, each ending in a newline. */
  | { readonly type: 'Cosigned'; readonly body: string }
  /** 400: the request does not parse, or old size > checkpoint size. */
  | { readonly type: 'BadRequest'; readonly message: string }
  /** 403: no signature by a key the witness trusts for this origin. */
  | { readonly type: 'Forbidden'; readonly message: string }
  /** 404: the origin is not a log this witness knows. */
  | { readonly type: 'UnknownLog' }
  /** 409: old size is not the latest cosigned size (given), or same size with another root. */
  | { readonly type: 'Conflict'; readonly latestSize: number; readonly message: string }
  /** 422: the consistency proof does not verify. */
  | { readonly type: 'InvalidProof'; readonly message: string };

const DECIMAL = /^(0|[1-9][0-9]*)$/;

function badRequest(message: string): ProtocolError {
  return new ProtocolError('Malformed', message);
}

/** Parses an add-checkpoint body (tlog-witness "add-checkpoint"). Throws `Malformed`. */
export function parseAddCheckpoint(input: string | Uint8Array): AddCheckpointRequest {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(input);
    } catch {
      throw badRequest('body is not UTF-8');
    }
  }
  if (utf8(text).length > MAX_ADD_CHECKPOINT_BYTES) throw badRequest('body too large');
  const split = text.indexOf('\n\n');
  if (split < 0) throw badRequest('no empty line before the checkpoint');
  const lines = text.slice(0, split).split('\n');
  const checkpoint = text.slice(split + 2);
  const first = lines[0]!;
  if (!first.startsWith('old ') || !DECIMAL.test(first.slice(4))) throw badRequest('first line must be "old <size>"');
  const oldSize = Number(first.slice(4));
  if (!Number.isSafeInteger(oldSize)) throw badRequest('old size too large');
  if (lines.length - 1 > MAX_PROOF_LINES) throw badRequest(`more than ${MAX_PROOF_LINES} proof lines`);
  const proof = lines.slice(1).map((l) => {
    let h: Uint8Array;
    try {
      h = fromBase64(l);
    } catch {
      throw badRequest('proof line is not base64');
    }
    if (h.length !== HASH_SIZE) throw badRequest('proof hash is not 32 bytes');
    return h;
  });
  // Well-formed note whose text is a well-formed checkpoint; verified later.
  parseCheckpoint(parseNote(checkpoint).text);
  return { oldSize, proof, checkpoint };
}

/** Writes an add-checkpoint body. */
export function formatAddCheckpoint(r: AddCheckpointRequest): string {
  return [`old ${r.oldSize}`, ...r.proof.map(toBase64)].map((l) => `${l}\n`).join('') + '\n' + r.checkpoint;
}

export interface WitnessedLog {
  readonly origin: string;
  readonly keys: readonly NoteVerifier[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS witness_logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS witness_refusals (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, at INTEGER NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL);
`;

export class Witness {
  private readonly logs = new Map<string, WitnessedLog>();
  private readonly stmts;

  constructor(
    private readonly db: Database.Database,
    private readonly signer: SignerKey,
    logs: readonly WitnessedLog[],
    private readonly clock: () => number,
  ) {
    db.exec(SCHEMA);
    for (const l of logs) this.logs.set(l.origin, l);
    this.stmts = {
      get: db.prepare<[string], { size: number; root: Buffer }>('SELECT size, root FROM witness_logs WHERE origin = ?'),
      put: db.prepare<[string, number, Uint8Array]>('INSERT INTO witness_logs (origin, size, root) VALUES (?, ?, ?) ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root'),
      refuse: db.prepare<[string, number, string, string]>('INSERT INTO witness_refusals (origin, at, reason, body) VALUES (?, ?, ?, ?)'),
      prune: db.prepare<[string, string, number]>('DELETE FROM witness_refusals WHERE origin = ? AND id NOT IN (SELECT id FROM witness_refusals WHERE origin = ? ORDER BY id DESC LIMIT ?)'),
    };
  }

  /** The verifier key of this witness's cosignatures (type 0x04). */
  get verifierKey(): string {
    return this.signer.verifier.verifierKey;
  }

  latest(origin: string): { size: number; root: Uint8Array } | undefined {
    const row = this.stmts.get.get(origin);
    return row ? { size: row.size, root: new Uint8Array(row.root) } : undefined;
  }

  async addCheckpoint(body: string | Uint8Array): Promise<AddCheckpointResult> {
    let req: AddCheckpointRequest;
    try {
      req = parseAddCheckpoint(body);
    } catch (e) {
      return { type: 'BadRequest', message: (e as Error).message };
    }
    // The origin is read before verification only to find the keys to verify with.
    const origin = parseNote(req.checkpoint).text.split('\n', 1)[0]!;
    const log = this.logs.get(origin);
    if (!log) return { type: 'UnknownLog' };
    let cp: Checkpoint;
    let text: string;
    try {
      const opened = await openCheckpoint(req.checkpoint, { origin, log: [...log.keys] });
      cp = opened.checkpoint;
      text = opened.note.text;
    } catch (e) {
      if (e instanceof TlogError) return { type: 'Forbidden', message: 'no valid signature by a key this witness trusts for the log' };
      return { type: 'BadRequest', message: (e as Error).message };
    }
    if (req.oldSize > cp.treeSize) return { type: 'BadRequest', message: 'old size is larger than the checkpoint size' };

    const verdict = this.db.transaction((): AddCheckpointResult | undefined => {
      const stored = this.latest(origin);
      const latestSize = stored?.size ?? 0;
      if (req.oldSize !== latestSize) return { type: 'Conflict', latestSize, message: 'old size is not the latest cosigned size' };
      if (stored && req.oldSize === cp.treeSize) {
        if (!bytesEqual(stored.root, cp.rootHash)) {
          this.keepRefusal(origin, 'same size, different root', body);
          return { type: 'Conflict', latestSize, message: 'same tree size with a different root hash' };
        }
        if (req.proof.length !== 0) return { type: 'InvalidProof', message: 'the proof between equal sizes must be empty' };
      } else if (req.oldSize === 0) {
        if (req.proof.length !== 0) return { type: 'InvalidProof', message: 'the proof from size 0 must be empty' };
      } else {
        try {
          verifyConsistency(req.oldSize, cp.treeSize, req.proof, stored!.root, cp.rootHash);
        } catch (e) {
          this.keepRefusal(origin, (e as Error).message, body);
          return { type: 'InvalidProof', message: 'the consistency proof does not verify' };
        }
      }
      // Persisted before answering (tlog-witness).
      this.stmts.put.run(origin, cp.treeSize, cp.rootHash);
      return undefined;
    })();
    if (verdict) return verdict;
    const signature = await this.signer.sign(utf8(text));
    return { type: 'Cosigned', body: `${formatSignatureLine({ name: this.signer.name, keyId: this.signer.keyId, signature })}\n` };
  }

  private keepRefusal(origin: string, reason: string, body: string | Uint8Array): void {
    const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
    this.stmts.refuse.run(origin, this.clock(), reason, text);
    this.stmts.prune.run(origin, origin, MAX_KEPT_REFUSALS);
  }
}
