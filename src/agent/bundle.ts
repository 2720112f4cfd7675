/**
 * The fleet's validation bundle, as the agent keeps and serves it (DESIGN section 6). The agent
 * is untrusted: everything it serves is verified by the client. It still refuses to install a
 * bundle that is not this fleet's (its countersignature must verify under the fleet's own `sign`
 * key), so that a mistake cannot replace a good bundle with a useless one.
 *
 * The inclusion proof goes stale as the validator's log grows, and clients refuse witness
 * cosignatures older than 7 days; so, at most every `refreshMs`, the agent reads the log's
 * latest checkpoint and recomputes the proof from the log's tiles (c2sp.org/tlog-tiles). On
 * request it adds a consistency proof from a checkpoint the client already holds.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { bytesEqual } from '../crypto/bytes.js';
import { ed25519Verify } from '../crypto/server.js';
import { bundleToJson, parseBundleJson, type Bundle, type ConsistencyProof, type ParsedBundle } from '../protocol/bundle.js';
import { ProtocolError } from '../protocol/errors.js';
import { readBounded } from '../protocol/read-bounded.js';
import { fleetIdOf, type FleetPublicKeys } from '../protocol/fleet.js';
import { countersignInput, statementLeafHash } from '../protocol/statement.js';
import {
  consistencyProofFromTiles,
  formatTilePath,
  formatTlogProof,
  inclusionProofFromTiles,
  parseCheckpoint,
  parseNote,
  rootFromInclusionProof,
} from '../protocol/tlog/index.js';
import type { HashTileId } from '../protocol/tlog/index.js';

export interface BundleStoreOptions {
  /** Where the installed bundle is kept across restarts (undefined: memory only). */
  readonly file?: string;
  readonly keys: () => FleetPublicKeys;
  readonly log: Logger;
  readonly refreshMs?: number;
  readonly fetch?: typeof fetch;
}

interface Installed {
  bundle: ParsedBundle;
  /** The validator log's prefix URL: where fresher checkpoints and tiles are read. */
  logUrl: string | undefined;
  refreshedAt: number;
}

const MAX_FETCH = 256 * 1024;

export class BundleStore {
  private installed: Installed | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly opts: BundleStoreOptions) {
    if (opts.file && existsSync(opts.file)) {
      try {
        const saved = JSON.parse(readFileSync(opts.file, 'utf8')) as { bundle: unknown; log?: unknown };
        this.installed = this.check(saved.bundle, typeof saved.log === 'string' ? saved.log : undefined);
      } catch (e) {
        opts.log.error({ err: (e as Error).message }, 'the saved validation bundle does not load; serving none');
      }
    }
  }

  /** Checks that a bundle is this fleet's: parsed, naming this fleet, countersigned by it. */
  private check(json: unknown, logUrl: string | undefined): Installed {
    const bundle = parseBundleJson(json);
    const keys = this.opts.keys();
    const s = bundle.signed;
    if (!bytesEqual(s.statement.fleetId, fleetIdOf(keys))) throw new ProtocolError('WrongFleet', 'the bundle names another fleet');
    if (!s.validatorSignature) throw new ProtocolError('BadRequest', 'the statement carries no validator signature');
    if (!bundle.countersignature || !ed25519Verify(keys.sign, countersignInput(s.statement.fleetId, s.text, s.validatorSignature), bundle.countersignature)) {
      throw new ProtocolError('BadRequest', 'the countersignature is not this fleet\'s');
    }
    if (logUrl !== undefined && !/^https?:\/\/[^\s]+$/.test(logUrl)) throw new ProtocolError('BadRequest', 'the log URL must be http(s)');
    return { bundle, logUrl: logUrl?.replace(/\/+$/, ''), refreshedAt: Date.now() };
  }

  install(json: unknown, logUrl: string | undefined): void {
    const installed = this.check(json, logUrl);
    this.installed = installed;
    this.save();
    this.opts.log.info({ seq: installed.bundle.signed.statement.seq }, 'validation bundle installed');
  }

  private save(): void {
    const i = this.installed;
    if (!this.opts.file || !i) return;
    const tmp = `${this.opts.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ bundle: bundleToJson(i.bundle), log: i.logUrl })}\n`);
    renameSync(tmp, this.opts.file);
  }

  private async get(url: string): Promise<Uint8Array> {
    const doFetch = this.opts.fetch ?? globalThis.fetch.bind(globalThis);
    const res = await doFetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    return readBounded(res, MAX_FETCH);
  }

  private tileFetcher(logUrl: string) {
    return (t: HashTileId): Promise<Uint8Array> => this.get(`${logUrl}/${formatTilePath({ kind: 'hash', level: t.level, index: t.index, width: t.width })}`);
  }

  /** Moves the proof to the log's latest checkpoint (fresh cosignatures), if it can. */
  private async refresh(): Promise<void> {
    const i = this.installed;
    if (!i?.logUrl) return;
    const note = new TextDecoder().decode(await this.get(`${i.logUrl}/checkpoint`));
    const cp = parseCheckpoint(parseNote(note).text);
    const index = i.bundle.tlogProof.index;
    if (cp.treeSize <= index) return;
    const proof = await inclusionProofFromTiles(index, cp.treeSize, this.tileFetcher(i.logUrl));
    // Not a trust decision (the client makes that), only a guard against serving garbage.
    const root = rootFromInclusionProof(index, cp.treeSize, statementLeafHash(i.bundle.statement), proof);
    if (!bytesEqual(root, cp.rootHash)) throw new Error('the log\'s tiles do not lead to its checkpoint');
    const proofText = formatTlogProof({ index, proof, checkpoint: note });
    const bundle = parseBundleJson({ ...bundleToJson(i.bundle), proof: proofText });
    this.installed = { ...i, bundle, refreshedAt: Date.now() };
    this.save();
  }

  /**
   * The bundle to serve, refreshed if stale, with a consistency proof from `consistencyFrom` (a
   * tree size the client holds) to the bundle's checkpoint when the log can provide one.
   */
  async current(consistencyFrom?: number): Promise<Bundle | undefined> {
    const i = this.installed;
    if (!i) return undefined;
    if (i.logUrl && Date.now() - i.refreshedAt >= (this.opts.refreshMs ?? 60_000)) {
      this.refreshing ??= this.refresh()
        .catch((e: unknown) => this.opts.log.warn({ err: (e as Error).message }, 'could not refresh the bundle\'s proof; serving the last one'))
        .finally(() => {
          this.refreshing = undefined;
          if (this.installed) this.installed.refreshedAt = Date.now();
        });
      await this.refreshing;
    }
    const b = this.installed!.bundle;
    if (consistencyFrom === undefined || consistencyFrom === 0 || !this.installed!.logUrl) return b;
    const size = parseCheckpoint(parseNote(b.tlogProof.checkpoint).text).treeSize;
    let consistency: ConsistencyProof;
    try {
      const [lo, hi] = consistencyFrom <= size ? [consistencyFrom, size] : [size, consistencyFrom];
      const proof = lo === hi ? [] : await consistencyProofFromTiles(lo, hi, this.tileFetcher(this.installed!.logUrl));
      consistency = { size1: lo, size2: hi, proof };
    } catch (e) {
      this.opts.log.warn({ err: (e as Error).message }, 'no consistency proof for the client');
      return b;
    }
    return { ...b, consistency };
  }
}
