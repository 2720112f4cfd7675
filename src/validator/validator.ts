/**
 * The validator (DESIGN section 6): an independent party that checks an operator's fleet-key
 * statements, signs the ones that pass with its attestation key, appends them to its audit log
 * (a tlog-tiles log whose checkpoints its log key signs), has witnesses cosign each checkpoint,
 * and publishes a checkpoint only once `quorum` witnesses have cosigned it.
 *
 * Submissions and publications run one at a time (`serial`), so the chain checks and the append
 * see the same state. The log, the chain rows and the evidence are written in one transaction.
 */
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { toHex, utf8 } from '../crypto/bytes.js';
import { evidenceDigest } from '../protocol/evidence.js';
import { formatSignedStatement, statementLeafHash } from '../protocol/statement.js';
import { formatCheckpoint, formatNote, formatTlogProof } from '../protocol/tlog/index.js';
import type { NoteSignature, SignerKey, VerifierKey } from '../protocol/tlog/index.js';
import { checkSubmission, type ChainHead, type ValidatorPolicy } from './checks.js';
import { ValidatorError } from './errors.js';
import { TileLog } from './log.js';
import { requestCosignature, type WitnessEndpoint } from './witness-client.js';

export interface ValidatorOptions {
  /** SQLite file of the log and the validator's state. */
  readonly dbPath: string;
  /** The log's origin line; its key is named after it (tlog-checkpoint). */
  readonly origin: string;
  readonly logKey: SignerKey;
  readonly attestationKey: SignerKey;
  /** The operator whose statements this validator takes. */
  readonly operator: VerifierKey;
  readonly policy: ValidatorPolicy;
  readonly witnesses: readonly WitnessEndpoint[];
  /** Cosignatures required before a checkpoint is published. */
  readonly quorum: number;
  /** POSIX seconds. */
  readonly clock: () => number;
  readonly log: Logger;
  readonly fetch?: typeof fetch;
}

export interface SubmitResult {
  /** The logged entry: the statement note with the operator's and the validator's signatures. */
  readonly entry: string;
  readonly index: number;
  /** c2sp.org/tlog-proof@v1 of the entry against the published checkpoint. */
  readonly proof: string;
}

export interface PublishedCheckpoint {
  readonly size: number;
  /** The checkpoint note: the log's signature, then the witnesses' cosignatures. */
  readonly note: string;
  /** POSIX seconds. */
  readonly at: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS statements (operator TEXT NOT NULL, seq INTEGER NOT NULL, idx INTEGER NOT NULL, leaf BLOB NOT NULL, fleet BLOB NOT NULL, PRIMARY KEY (operator, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evidence (digest BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS witness_sizes (name TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;
`;

export class Validator {
  private readonly db: Database.Database;
  readonly tiles: TileLog;
  private readonly stmts;
  private serialTail: Promise<unknown> = Promise.resolve();
  private refreshTimer: NodeJS.Timeout | undefined;
  private published: PublishedCheckpoint | undefined;

  constructor(private readonly opts: ValidatorOptions) {
    if (opts.logKey.name !== opts.origin) throw new Error('the log key must be named after the origin (tlog-checkpoint)');
    if (opts.quorum < 0 || opts.quorum > opts.witnesses.length) throw new Error('quorum must be between 0 and the number of witnesses');
    this.db = new Database(opts.dbPath);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(SCHEMA);
    this.tiles = new TileLog(this.db);
    this.stmts = {
      head: this.db.prepare<[string], { seq: number; leaf: Buffer }>('SELECT seq, leaf FROM statements WHERE operator = ? ORDER BY seq DESC LIMIT 1'),
      bySeq: this.db.prepare<[string, number], { idx: number }>('SELECT idx FROM statements WHERE operator = ? AND seq = ?'),
      insertStatement: this.db.prepare<[string, number, number, Uint8Array, Uint8Array]>('INSERT INTO statements (operator, seq, idx, leaf, fleet) VALUES (?, ?, ?, ?, ?)'),
      insertEvidence: this.db.prepare<[Uint8Array, Uint8Array]>('INSERT INTO evidence (digest, data) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING'),
      evidence: this.db.prepare<[Uint8Array], { data: Buffer }>('SELECT data FROM evidence WHERE digest = ?'),
      latestCheckpoint: this.db.prepare<[], { size: number; note: string; at: number }>('SELECT size, note, at FROM checkpoints ORDER BY size DESC LIMIT 1'),
      putCheckpoint: this.db.prepare<[number, string, number]>('INSERT INTO checkpoints (size, note, at) VALUES (?, ?, ?) ON CONFLICT (size) DO UPDATE SET note = excluded.note, at = excluded.at'),
      witnessSize: this.db.prepare<[string], { size: number }>('SELECT size FROM witness_sizes WHERE name = ?'),
      putWitnessSize: this.db.prepare<[string, number]>('INSERT INTO witness_sizes (name, size) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET size = excluded.size'),
    };
  }

  /** Verifier keys, C2SP vkey format: the log key first, then the attestation key. */
  verifierKeys(): string[] {
    return [this.opts.logKey.verifier.verifierKey, this.opts.attestationKey.verifier.verifierKey];
  }

  get origin(): string {
    return this.opts.origin;
  }

  /** Runs `f` after every earlier submission and publication has finished. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.serialTail.then(f, f);
    this.serialTail = run.catch(() => undefined);
    return run;
  }

  private head(): ChainHead | undefined {
    const row = this.stmts.head.get(this.opts.operator.name);
    return row ? { seq: row.seq, leaf: new Uint8Array(row.leaf) } : undefined;
  }

  private loggedEntry(seq: number): string | undefined {
    const row = this.stmts.bySeq.get(this.opts.operator.name, seq);
    if (!row) return undefined;
    const bytes = this.tiles.entry(row.idx);
    return bytes ? new TextDecoder().decode(bytes) : undefined;
  }

  /** Checks, signs, logs and publishes a statement (see the module comment). */
  submit(note: string, evidence: Uint8Array | undefined): Promise<SubmitResult> {
    return this.serial(async () => {
      const checked = await checkSubmission(note, evidence, {
        operator: this.opts.operator,
        head: this.head(),
        logged: (seq) => this.loggedEntry(seq),
        policy: this.opts.policy,
        now: this.opts.clock(),
      });
      let entry: string;
      let index: number;
      if (checked.type === 'AlreadyLogged') {
        entry = checked.entry;
        index = this.stmts.bySeq.get(this.opts.operator.name, checked.signed.statement.seq)!.idx;
      } else {
        const s = checked.signed;
        const signature = await this.opts.attestationKey.sign(utf8(s.text));
        const validatorSignature: NoteSignature = { name: this.opts.attestationKey.name, keyId: this.opts.attestationKey.keyId, signature };
        entry = formatSignedStatement({ ...s, validatorSignature });
        const leaf = statementLeafHash(entry);
        try {
          index = this.db.transaction(() => {
            const i = this.tiles.append(utf8(entry));
            this.stmts.insertStatement.run(this.opts.operator.name, s.statement.seq, i, leaf, s.statement.fleetId);
            this.stmts.insertEvidence.run(evidenceDigest(evidence!), evidence!);
            return i;
          })();
        } catch (e) {
          this.tiles.reload();
          throw e;
        }
        this.opts.log.info({ index, seq: s.statement.seq, fleet: toHex(s.statement.fleetId) }, 'statement logged');
      }
      let published = this.latest();
      if (!published || published.size <= index) {
        try {
          published = await this.publishNow(false);
        } catch (e) {
          if (e instanceof ValidatorError && e.code === 'WitnessQuorum') throw new ValidatorError('WitnessQuorum', `logged at index ${index}, but too few witnesses cosigned a checkpoint with it (${e.message}): submit again to retry`);
          throw e;
        }
      }
      return { entry, index, proof: this.proofAgainst(index, published) };
    });
  }

  /** The latest published checkpoint (kept in memory: every tile and proof request reads it). */
  latest(): PublishedCheckpoint | undefined {
    this.published ??= this.stmts.latestCheckpoint.get();
    return this.published;
  }

  private proofAgainst(index: number, cp: PublishedCheckpoint): string {
    return formatTlogProof({ index, proof: this.tiles.inclusionProof(index, cp.size), checkpoint: cp.note });
  }

  /** A tlog-proof of entry `index` against the latest published checkpoint. */
  proof(index: number): string | undefined {
    const cp = this.latest();
    if (!cp || index < 0 || index >= cp.size) return undefined;
    return this.proofAgainst(index, cp);
  }

  /**
   * Signs a checkpoint of the whole log, asks every witness to cosign it, and publishes it if
   * `quorum` of them did. With `force`, a checkpoint of the same size is cosigned again (fresh
   * witness timestamps, which clients require to be under 7 days old).
   */
  publish(force = true): Promise<PublishedCheckpoint> {
    return this.serial(() => this.publishNow(force));
  }

  private async publishNow(force: boolean): Promise<PublishedCheckpoint> {
    const size = this.tiles.size();
    const current = this.latest();
    if (current && current.size === size && !force) return current;
    if (current && current.size > size) throw new ValidatorError('Internal', 'invariant: published checkpoint is beyond the log');
    const text = formatCheckpoint({ origin: this.opts.origin, treeSize: size, rootHash: this.tiles.root(size), extensions: [] });
    const logSignature: NoteSignature = { name: this.opts.logKey.name, keyId: this.opts.logKey.keyId, signature: await this.opts.logKey.sign(utf8(text)) };
    const signed = formatNote({ text, signatures: [logSignature] });
    const answers = await Promise.all(this.opts.witnesses.map((w) => this.cosign(w, signed, size)));
    const cosignatures = answers.filter((a): a is NoteSignature => a !== undefined);
    if (cosignatures.length < this.opts.quorum) {
      this.opts.log.warn({ size, cosigned: cosignatures.length, quorum: this.opts.quorum }, 'checkpoint not published: witness quorum not met');
      throw new ValidatorError('WitnessQuorum', `${cosignatures.length} of ${this.opts.quorum} required witness cosignatures`);
    }
    const note = formatNote({ text, signatures: [logSignature, ...cosignatures] });
    const at = this.opts.clock();
    this.stmts.putCheckpoint.run(size, note, at);
    this.published = { size, note, at };
    return this.published;
  }

  /** One witness's cosignature, catching up once from the size it reports (409). */
  private async cosign(w: WitnessEndpoint, checkpoint: string, size: number): Promise<NoteSignature | undefined> {
    let old = this.stmts.witnessSize.get(w.key.name)?.size ?? 0;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (old > size) break;
      const proof = old === size ? [] : this.tiles.consistencyProof(old, size);
      const a = await requestCosignature(w, old, proof, checkpoint, this.opts.fetch ? { fetch: this.opts.fetch } : {});
      if (a.type === 'Cosigned') {
        this.stmts.putWitnessSize.run(w.key.name, size);
        return a.signature;
      }
      if (a.type === 'Failed' || a.size === undefined || a.size === old) {
        this.opts.log.warn({ witness: w.key.name, answer: a.type, message: a.type === 'Failed' ? a.message : undefined }, 'witness did not cosign');
        return undefined;
      }
      old = a.size;
    }
    this.opts.log.warn({ witness: w.key.name, size: old }, 'witness is ahead of this log: it saw a checkpoint this log never published');
    return undefined;
  }

  /** Re-cosigns the checkpoint every `intervalMs` (freshness), and retries an unpublished tail. */
  startRefresh(intervalMs: number): void {
    this.refreshTimer = setInterval(() => {
      this.publish(true).catch((e: unknown) => this.opts.log.warn({ err: (e as Error).message }, 'checkpoint refresh failed'));
    }, intervalMs);
    this.refreshTimer.unref();
  }

  /** A tile of the published tree, as served under `<prefix>/tile/`. */
  tile(level: number, index: number, width: number): Uint8Array | undefined {
    return this.tiles.tile(level, index, width, this.latest()?.size ?? 0);
  }

  entryBundle(index: number, width: number): Uint8Array | undefined {
    return this.tiles.entryBundle(index, width, this.latest()?.size ?? 0);
  }

  evidence(digest: Uint8Array): Uint8Array | undefined {
    const row = this.stmts.evidence.get(digest);
    return row ? new Uint8Array(row.data) : undefined;
  }

  /** Leaf hash of the operator's latest statement and its seq (what `fleet publish` chains to). */
  chainHead(): { seq: number; leaf: Uint8Array; entry: string } | undefined {
    const h = this.head();
    if (!h) return undefined;
    return { ...h, entry: this.loggedEntry(h.seq)! };
  }

  async close(): Promise<void> {
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    await this.serialTail;
    this.db.close();
  }
}
