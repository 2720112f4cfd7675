/**
 * The HSM core: the only trusted code (DESIGN section 3). It has no I/O; the agent drives it
 * with the calls below and carries out the storage writes it asks for. Randomness, time and
 * NVRAM come from its Platform.
 *
 * Life of a request on the leader (DESIGN section 5):
 *   openRequest   decrypt and check the envelope, learn the record id
 *   applyRequest  apply to the leader's tip with the record's tree path; the sealed response
 *                 stays inside the HSM
 *   closeBatch    MAC a new log entry over the batch; the agent writes entry and nodes
 *   captureNext   the entry read back from storage advances the position (in RAM)
 *   persist       the position goes to NVRAM
 *   statement     MAC over (member, persisted position)
 *   commit        a majority certificate releases the responses up to the certified entry
 */
import { bytesEqual, concatBytes, toHex, utf8 } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { hmacSha256, verifyHmacSha256, ed25519PublicKey, hkdf } from '../crypto/server.js';
import { createServerSetup } from '../crypto/opaque.js';
import { openRequest as hpkeOpenRequest, x25519PublicKey, setupBaseSenderSync, setupBaseReceiver } from '../crypto/hpke-node.js';
import { Writer } from '../protocol/encoding.js';
import { ProtocolError, type ErrorCode } from '../protocol/errors.js';
import { accountTag, inRanges, routingHint, validateUserId } from '../protocol/ids.js';
import { channelInfo, requestAad, type RequestEnvelope } from '../protocol/channel.js';
import { decodeRequest, encodeResponse, type MessageType, type VaultRequest } from '../protocol/messages.js';
import { decodeEntry, encodeEntry, type LogEntry, entryHash, entryMacInput, statementMacInput, type Certificate, type Position, type Statement, PROTOCOL_VERSION, MEMBER_ID_BYTES } from '../protocol/log.js';
import { fleetIdOf, type FleetPublicKeys } from '../protocol/fleet.js';
import type { Platform } from './platform.js';
import { DEFAULT_POLICY, decodeHsmSecrets, decodeFleetBlob, deriveSubkeys, encodeFleetBlob, encodeHsmSecrets, firstEpochKey, fleetPublicKeys, type FleetConfig, type FleetSecrets, type HsmSecrets, type Subkeys } from './keys.js';
import { readNvram, writeNvram, type NvramState } from './nvram.js';
import { leafEpoch, openSlot, sealSlot, type RecordSlot } from './record.js';
import { applyVaultRequest, type VaultContext } from './vault.js';
import { EPOCH_STATE_ID, cloneEpochState, openEpochState, sealEpochState, type EpochState } from './epoch.js';
import { nextEpochKey } from './keys.js';
import { emptyRoot, layered, lookup, MapNodeSource, proofSource, rootHash, treeRoot, upsert, type AddedNode, type TreeContext, type TreeRoot, type TreeTop } from './tree.js';
import { countersignStatement, type CountersignResult } from './countersign.js';
import type { NoteSignature } from '../protocol/tlog/index.js';

/** Open requests waiting to be applied; oldest are evicted first (a flood cannot exhaust RAM). */
const MAX_OPEN_REQUESTS = 4096;
/** Requests in one batch. */
const MAX_BATCH = 512;

interface Captured extends Position {
  root: Uint8Array;
}

interface OpenedRequest {
  request: VaultRequest;
  recordId: Uint8Array;
  digest: Uint8Array;
  sealResponse(plaintext: Uint8Array, responseNonce: Uint8Array): Uint8Array;
}

export interface ReleasedResponse {
  handle: number;
  /** The HPKE-sealed response, or an error for which the outcome is unknown. */
  response: { type: 'Sealed'; body: Uint8Array } | { type: 'OutcomeUnknown' };
}

interface PendingEntry {
  index: number;
  hash: Uint8Array;
  /** Leaves still sealed under the previous epoch once this entry is in, and which epoch that was. */
  previousEpochCount: number;
  epoch: number;
  responses: ReleasedResponse[];
  added: AddedNode[];
}

interface LeaderState {
  /** Tip of the leader's own chain and its tree. */
  tip: Position;
  tree: TreeRoot;
  /** Hashes of the entries this leader proposed, by index. */
  chain: Map<number, Uint8Array>;
  /** Nodes created by entries not yet W entries old, layered over shipped nodes. */
  overlay: MapNodeSource;
  /** The nodes each recent entry of this leader created, oldest first (for pruning the overlay). */
  recent: { index: number; added: AddedNode[] }[];
  pending: PendingEntry[];
  /** Epoch accounting at the tip (the leaf at EPOCH_STATE_ID), loaded at the first batch that needs it. */
  epochState: EpochState | undefined;
  startedOnEmptyTree: boolean;
  /** Changes the open batch makes to the per-epoch leaf counts. */
  epochDeltas: Map<number, number>;
  batch: { digests: Uint8Array[]; responses: ReleasedResponse[]; added: AddedNode[]; removed: Uint8Array[] };
}

interface FleetRuntime {
  secrets: FleetSecrets;
  config: FleetConfig;
  fleetId: Uint8Array;
  publicKeys: FleetPublicKeys;
  subkeys: Subkeys;
  tree: TreeContext;
  epoch: number;
  epochKey: Uint8Array;
  previousEpochKey?: Uint8Array;
}

export type OpenResult = { type: 'Opened'; handle: number; recordId: Uint8Array } | { type: 'Refused'; code: ErrorCode; message: string };
export type ApplyResult = { type: 'Applied' } | { type: 'StaleProof'; recordId: Uint8Array } | { type: 'Busy' } | { type: 'NotLeader' } | { type: 'UnknownHandle' } | { type: 'Halted'; message: string };
export type CloseBatchResult = { type: 'Proposed'; entry: Uint8Array; index: number; top: TreeTop; added: AddedNode[]; removed: Uint8Array[] } | { type: 'Empty' } | { type: 'NotLeader' } | { type: 'Busy' } | { type: 'StaleProof'; recordId: Uint8Array };
export type CaptureResult =
  | { type: 'Ok'; position: Position; steppedDown?: ReleasedResponse[] }
  | { type: 'NoFleet' }
  | { type: 'Malformed' }
  | { type: 'InvalidMac'; index: number }
  | { type: 'StaleIndex'; index: number }
  | { type: 'Gap'; expected: number; got: number }
  | { type: 'WrongPrev'; index: number }
  | { type: 'NotMyPosition'; index: number };
export type PersistResult = { type: 'Persisted'; position: Position } | { type: 'Unchanged'; position: Position } | { type: 'TooSoon'; waitMs: number } | { type: 'NothingCaptured' };
export type CommitResult = { type: 'Committed'; index: number; released: ReleasedResponse[] } | { type: 'InvalidCertificate'; reason: string } | { type: 'SteppedDown'; released: ReleasedResponse[] };
export type BecomeLeaderResult = { type: 'Ok'; position: Position } | { type: 'NotCaughtUp' } | { type: 'WrongTop' } | { type: 'NoFleet' };

export interface HsmStatus {
  memberId: Uint8Array;
  fleetId?: Uint8Array;
  captured?: Position;
  persisted?: Position;
  committed?: Position;
  leader: boolean;
  halted?: string;
  /** Set when NVRAM names a position the agent has not yet shown the HSM. */
  awaiting?: Position;
}

/** A member id names both identity keys, so a wrap key cannot be swapped under a member's name. */
/** The first node of a shipped path is the top of the tree it was read from. */
function proofTop(nodes: Uint8Array[]): Uint8Array | null {
  return nodes[0] ? sha256(nodes[0]) : null;
}

export function memberIdOf(id: MemberIdentity): Uint8Array {
  return sha256(new Writer().label('bkv/v1/member').fixed(id.signPublic, 32).fixed(id.wrapPublic, 32).finish()).slice(0, MEMBER_ID_BYTES);
}

/** An HSM's identity keys: Ed25519 for attestations, X25519 to receive the fleet keys. */
export interface MemberIdentity {
  signPublic: Uint8Array;
  wrapPublic: Uint8Array;
}

export function logIdOf(fleetId: Uint8Array): Uint8Array {
  return sha256(utf8('bkv/v1/log-id'), fleetId);
}

export class HsmCore {
  private secrets: HsmSecrets;
  readonly memberId: Uint8Array;
  readonly identityPublicKey: Uint8Array;
  readonly wrapPublicKey: Uint8Array;
  private readonly wrapPrivateKey: Uint8Array;
  private fleet: FleetRuntime | undefined;
  private nvram: NvramState | null = null;
  private captured: Captured | undefined;
  private lastPersistAt = Number.NEGATIVE_INFINITY;
  private committed: Position | undefined;
  private leader: LeaderState | undefined;
  private halted: string | undefined;
  private readonly open = new Map<number, OpenedRequest>();
  /** "Outcome unknown" answers from a step-down not yet handed to the agent. */
  private orphaned: ReleasedResponse[] = [];
  private nextHandle = 1;

  private constructor(private readonly platform: Platform) {
    const stored = platform.secrets.read();
    if (stored) {
      this.secrets = decodeHsmSecrets(stored);
    } else {
      this.secrets = { identitySeed: platform.randomBytes(32) };
      platform.secrets.write(encodeHsmSecrets(this.secrets));
    }
    this.identityPublicKey = ed25519PublicKey(this.secrets.identitySeed);
    this.wrapPrivateKey = hkdf(this.secrets.identitySeed, new Uint8Array(0), utf8('bkv/v1/identity-wrap'), 32);
    this.wrapPublicKey = x25519PublicKey(this.wrapPrivateKey);
    this.memberId = memberIdOf({ signPublic: this.identityPublicKey, wrapPublic: this.wrapPublicKey });
    if (this.secrets.fleet) this.loadFleet();
  }

  /** Starts the core on its platform: loads its secrets and its NVRAM position. */
  static boot(platform: Platform): HsmCore {
    return new HsmCore(platform);
  }

  private loadFleet(): void {
    const f = this.secrets.fleet!;
    const publicKeys = fleetPublicKeys(f.secrets);
    const fleetId = fleetIdOf(publicKeys);
    this.fleet = {
      secrets: f.secrets,
      config: f.config,
      fleetId,
      publicKeys,
      subkeys: deriveSubkeys(f.secrets.mac),
      tree: { fleetId, logId: logIdOf(fleetId) },
      epoch: f.epoch,
      epochKey: f.epochKey,
      ...(f.previousEpochKey ? { previousEpochKey: f.previousEpochKey } : {}),
    };
    this.nvram = readNvram(this.platform.nvram, fleetId);
    // With no valid NVRAM slot the HSM refuses the fleet (DESIGN section 5).
    if (!this.nvram) this.halt('no valid NVRAM slot for this fleet');
  }

  private halt(reason: string): void {
    // A violated invariant stops the HSM; it does not limp on (STYLE.md).
    this.halted = reason;
    this.leader = undefined;
  }

  status(): HsmStatus {
    const s: HsmStatus = { memberId: this.memberId, leader: this.leader !== undefined };
    if (this.fleet) s.fleetId = this.fleet.fleetId;
    if (this.captured) s.captured = { index: this.captured.index, hash: this.captured.hash };
    if (this.nvram) s.persisted = this.nvram.position;
    if (this.committed) s.committed = this.committed;
    if (this.halted) s.halted = this.halted;
    if (!this.captured && this.nvram) s.awaiting = this.nvram.position;
    return s;
  }

  publicKeys(): FleetPublicKeys | undefined {
    return this.fleet?.publicKeys;
  }

  fleetConfig(): FleetConfig | undefined {
    return this.fleet?.config;
  }

  /** Countersigns a validated statement that lists this fleet's id, keys and routes (countersign.ts). */
  countersign(statementText: string, validatorSignature: NoteSignature): CountersignResult {
    const f = this.fleet;
    if (!f || this.halted) return { type: 'NoFleet' };
    return countersignStatement({ fleetId: f.fleetId, publicKeys: f.publicKeys, routes: f.config.routes, signSeed: f.secrets.sign }, statementText, validatorSignature);
  }

  // ---- key ceremony (single-HSM form; multi-member ceremonies wrap these keys to peers) ----

  /**
   * Generates the fleet keys inside this HSM, writes them to its secret store, and returns the
   * genesis entry: index 0, prev = fleet id, the empty tree's root.
   */
  createFleet(opts: { policy?: Partial<FleetConfig['policy']>; routes?: FleetConfig['routes']; members?: Uint8Array[] }): { type: 'Created'; fleetId: Uint8Array; publicKeys: FleetPublicKeys; genesis: Uint8Array } | { type: 'AlreadyHasFleet' } {
    if (this.secrets.fleet) return { type: 'AlreadyHasFleet' };
    const secrets: FleetSecrets = {
      // The OPAQUE library draws its setup from the platform's CSPRNG (crypto.getRandomValues).
      opaque: createServerSetup(),
      hpke: this.platform.randomBytes(32),
      sign: this.platform.randomBytes(32),
      mac: this.platform.randomBytes(32),
      record: this.platform.randomBytes(32),
    };
    const config: FleetConfig = {
      members: opts.members ?? [this.memberId],
      policy: { ...DEFAULT_POLICY, ...opts.policy },
      routes: opts.routes ?? [{ from: 0, to: 0xffff }],
    };
    if (!config.members.some((m) => bytesEqual(m, this.memberId))) throw new ProtocolError('BadRequest', 'this HSM must be a member of its fleet');
    // Epoch 0's key is derived and the record root erased: no older key can ever be rebuilt.
    const epochKey = firstEpochKey(secrets.record);
    secrets.record = new Uint8Array(32);
    const fleetId = fleetIdOf(fleetPublicKeys(secrets));
    const genesisBody = { version: PROTOCOL_VERSION, index: 0, prev: fleetId, root: emptyRoot({ fleetId, logId: logIdOf(fleetId) }), batchDigest: new Uint8Array(32), leader: this.memberId };
    const genesis = encodeEntry({ ...genesisBody, mac: hmacSha256(deriveSubkeys(secrets.mac).logEntry, entryMacInput(fleetId, genesisBody)) });
    // NVRAM first: a crash before the secret store is written leaves no fleet, and a new ceremony
    // can run; the other order would leave keys without a position, refused for good.
    writeNvram(this.platform.nvram, null, fleetId, { index: 0, hash: entryHash(genesis) });
    this.secrets = { ...this.secrets, fleet: { secrets, config, epoch: 0, epochKey } };
    this.platform.secrets.write(encodeHsmSecrets(this.secrets));
    this.halted = undefined;
    this.loadFleet();
    const f = this.fleet!;
    return { type: 'Created', fleetId: f.fleetId, publicKeys: f.publicKeys, genesis };
  }

  identity(): MemberIdentity & { memberId: Uint8Array } {
    return { memberId: this.memberId, signPublic: this.identityPublicKey, wrapPublic: this.wrapPublicKey };
  }

  /**
   * Wraps the fleet keys to another member's identity key (key ceremony, DESIGN section 7). Only
   * to a member of the fleet's fixed list, and only before the log has grown past genesis, so a
   * hostile agent cannot later talk an HSM into exporting its keys.
   */
  exportFleet(to: MemberIdentity): { type: 'Wrapped'; blob: Uint8Array } | { type: 'NotAMember' } | { type: 'CeremonyOver' } | { type: 'NoFleet' } {
    const f = this.fleet;
    if (!f || !this.secrets.fleet) return { type: 'NoFleet' };
    const member = memberIdOf(to);
    if (!f.config.members.some((m) => bytesEqual(m, member))) return { type: 'NotAMember' };
    if ((this.captured?.index ?? this.nvram?.position.index ?? 0) !== 0) return { type: 'CeremonyOver' };
    const sender = setupBaseSenderSync(to.wrapPublic, concatBytes(utf8('bkv/v1/fleet-wrap'), member), this.platform.randomBytes(32));
    const ct = sender.seal(member, encodeFleetBlob(this.secrets.fleet));
    return { type: 'Wrapped', blob: concatBytes(sender.enc, ct) };
  }

  /** Takes fleet keys wrapped to this HSM, and the fleet's genesis entry as its first position. */
  joinFleet(blob: Uint8Array, genesis: Uint8Array): { type: 'Joined'; fleetId: Uint8Array } | { type: 'AlreadyHasFleet' } | { type: 'Invalid'; reason: string } {
    if (this.secrets.fleet) return { type: 'AlreadyHasFleet' };
    let fleet;
    try {
      const receiver = setupBaseReceiver(this.wrapPrivateKey, blob.subarray(0, 32), concatBytes(utf8('bkv/v1/fleet-wrap'), this.memberId));
      fleet = decodeFleetBlob(receiver.open(this.memberId, blob.subarray(32)));
    } catch {
      return { type: 'Invalid', reason: 'the wrapped fleet keys do not open for this HSM' };
    }
    if (!fleet.config.members.some((m) => bytesEqual(m, this.memberId))) return { type: 'Invalid', reason: 'this HSM is not a member of that fleet' };
    const fleetId = fleetIdOf(fleetPublicKeys(fleet.secrets));
    const subkeys = deriveSubkeys(fleet.secrets.mac);
    let e: LogEntry;
    try {
      e = decodeEntry(genesis);
    } catch {
      return { type: 'Invalid', reason: 'malformed genesis entry' };
    }
    const { mac, ...body } = e;
    if (e.index !== 0 || !bytesEqual(e.prev, fleetId) || !verifyHmacSha256(subkeys.logEntry, mac, entryMacInput(fleetId, body))) return { type: 'Invalid', reason: 'not this fleet\'s genesis entry' };
    writeNvram(this.platform.nvram, null, fleetId, { index: 0, hash: entryHash(genesis) });
    this.secrets = { ...this.secrets, fleet };
    this.platform.secrets.write(encodeHsmSecrets(this.secrets));
    this.halted = undefined;
    this.loadFleet();
    return { type: 'Joined', fleetId };
  }

  // ---- capture (every member) ----

  /**
   * Advances the position over entries read back from storage after a durable append. An entry
   * is accepted only with a valid MAC, index = position.index + 1 and prev = position.hash (I5).
   * After a restart the first entry must be the one NVRAM names.
   */
  captureNext(entries: Uint8Array[]): CaptureResult {
    const f = this.fleet;
    if (!f || this.halted) return { type: 'NoFleet' };
    let steppedDown: ReleasedResponse[] | undefined;
    for (const bytes of entries) {
      let e;
      try {
        e = decodeEntry(bytes);
      } catch {
        return { type: 'Malformed' };
      }
      const { mac, ...body } = e;
      if (e.version !== PROTOCOL_VERSION || !verifyHmacSha256(f.subkeys.logEntry, mac, entryMacInput(f.fleetId, body))) return { type: 'InvalidMac', index: e.index };
      const hash = entryHash(bytes);
      if (!this.captured) {
        const p = this.nvram!.position;
        if (e.index !== p.index || !bytesEqual(hash, p.hash)) return { type: 'NotMyPosition', index: e.index };
        this.captured = { index: e.index, hash, root: e.root };
        continue;
      }
      if (e.index <= this.captured.index) return { type: 'StaleIndex', index: e.index };
      if (e.index !== this.captured.index + 1) return { type: 'Gap', expected: this.captured.index + 1, got: e.index };
      if (!bytesEqual(e.prev, this.captured.hash)) return { type: 'WrongPrev', index: e.index };
      this.captured = { index: e.index, hash, root: e.root };
      // A leader that sees another entry at an index it proposed has lost that index: it stops
      // leading and its pending requests get "outcome unknown" (DESIGN section 5).
      const mine = this.leader?.chain.get(e.index);
      // Kept on the core until delivered: a later refusal in this call must not lose them.
      if (mine && !bytesEqual(mine, hash)) {
        const dropped = this.stepDown();
        this.orphaned.push(...dropped);
      }
      if (this.leader) this.pruneOverlay();
    }
    const position = { index: this.captured!.index, hash: this.captured!.hash };
    if (this.orphaned.length > 0) {
      steppedDown = this.orphaned;
      this.orphaned = [];
    }
    return steppedDown ? { type: 'Ok', position, steppedDown } : { type: 'Ok', position };
  }

  /** Writes the captured position to NVRAM, at most every P ms. */
  persist(): PersistResult {
    const f = this.fleet;
    if (!f || !this.captured || this.halted) return { type: 'NothingCaptured' };
    const position = { index: this.captured.index, hash: this.captured.hash };
    if (this.nvram && this.nvram.position.index === position.index && bytesEqual(this.nvram.position.hash, position.hash)) return { type: 'Unchanged', position };
    if (this.nvram && position.index < this.nvram.position.index) {
      this.halt('captured position is behind NVRAM');
      return { type: 'NothingCaptured' };
    }
    const now = this.platform.now();
    const wait = this.lastPersistAt + f.config.policy.persistIntervalMs - now;
    if (wait > 0) return { type: 'TooSoon', waitMs: wait };
    this.nvram = writeNvram(this.platform.nvram, this.nvram, f.fleetId, position);
    this.lastPersistAt = now;
    return { type: 'Persisted', position };
  }

  /** A statement is issued only for a position already persisted in NVRAM (DESIGN section 5). */
  statement(): { type: 'Ok'; statement: Statement } | { type: 'NothingPersisted' } {
    const f = this.fleet;
    if (!f || !this.nvram || this.halted || !this.captured) return { type: 'NothingPersisted' };
    const p = this.nvram.position;
    return { type: 'Ok', statement: { member: this.memberId, index: p.index, hash: p.hash, mac: hmacSha256(f.subkeys.capture, statementMacInput(f.fleetId, this.memberId, p)) } };
  }

  /** Checks a certificate: statements for exactly one (j, H) from a majority of distinct members. */
  verifyCertificate(cert: Certificate): { type: 'Ok'; position: Position } | { type: 'Invalid'; reason: string } {
    const f = this.fleet;
    if (!f) return { type: 'Invalid', reason: 'no fleet' };
    const first = cert[0];
    if (!first) return { type: 'Invalid', reason: 'empty certificate' };
    const seen = new Set<string>();
    for (const s of cert) {
      if (s.index !== first.index || !bytesEqual(s.hash, first.hash)) return { type: 'Invalid', reason: 'statements for different positions' };
      if (!f.config.members.some((m) => bytesEqual(m, s.member))) return { type: 'Invalid', reason: 'statement from a non-member' };
      const id = toHex(s.member);
      if (seen.has(id)) continue;
      if (!verifyHmacSha256(f.subkeys.capture, s.mac, statementMacInput(f.fleetId, s.member, s))) return { type: 'Invalid', reason: 'bad statement MAC' };
      seen.add(id);
    }
    const majority = Math.floor(f.config.members.length / 2) + 1;
    if (seen.size < majority) return { type: 'Invalid', reason: `statements from ${seen.size} of ${majority} members needed` };
    return { type: 'Ok', position: { index: first.index, hash: first.hash } };
  }

  // ---- leading ----

  /** Starts leading from the persisted position, once the agent has caught the HSM up. */
  becomeLeader(top: TreeTop): BecomeLeaderResult {
    const f = this.fleet;
    if (!f || this.halted) return { type: 'NoFleet' };
    if (!this.captured || !this.nvram || this.captured.index !== this.nvram.position.index) return { type: 'NotCaughtUp' };
    if (!bytesEqual(rootHash(f.tree, top), this.captured.root)) return { type: 'WrongTop' };
    const tip = { index: this.captured.index, hash: this.captured.hash };
    this.leader = {
      tip,
      tree: treeRoot(f.tree, top),
      chain: new Map([[tip.index, tip.hash]]),
      overlay: new MapNodeSource(),
      recent: [],
      pending: [],
      epochState: undefined,
      startedOnEmptyTree: top === null,
      epochDeltas: new Map(),
      batch: { digests: [], responses: [], added: [], removed: [] },
    };
    return { type: 'Ok', position: tip };
  }

  isLeader(): boolean {
    return this.leader !== undefined;
  }

  /** Stops leading; every response not yet released is answered "outcome unknown". */
  stepDown(): ReleasedResponse[] {
    const l = this.leader;
    this.leader = undefined;
    const out: ReleasedResponse[] = this.orphaned;
    this.orphaned = [];
    if (!l) return out;
    for (const p of l.pending) for (const r of p.responses) out.push({ handle: r.handle, response: { type: 'OutcomeUnknown' } });
    for (const r of l.batch.responses) out.push({ handle: r.handle, response: { type: 'OutcomeUnknown' } });
    return out;
  }

  /** Decrypts and checks a request envelope. Nothing here reads or changes record state. */
  openRequest(env: RequestEnvelope): OpenResult {
    const f = this.fleet;
    if (!f || this.halted) return { type: 'Refused', code: 'Unavailable', message: 'this HSM has no usable fleet' };
    if (!this.leader) return { type: 'Refused', code: 'NotLeader', message: 'not the leader' };
    if (env.version !== PROTOCOL_VERSION) return { type: 'Refused', code: 'UnsupportedVersion', message: `unsupported protocol version ${env.version}` };
    if (env.hint.length !== 2 || env.tag.length !== 32 || env.enc.length !== 32) return { type: 'Refused', code: 'Malformed', message: 'bad envelope field sizes' };
    if (!inRanges(env.hint, f.config.routes)) return { type: 'Refused', code: 'OutOfRange', message: 'user id is not routed to this fleet' };
    let opened;
    let request: VaultRequest;
    try {
      opened = hpkeOpenRequest(f.secrets.hpke, channelInfo(f.fleetId), requestAad(env), env.enc, env.ciphertext);
      request = decodeRequest(opened.plaintext);
      // The codec allows an empty user id; routingHint below would throw on it, outside this try.
      validateUserId(request.userId);
    } catch (e) {
      if (e instanceof ProtocolError) return { type: 'Refused', code: e.code, message: e.message };
      return { type: 'Refused', code: 'Malformed', message: 'request does not decode' };
    }
    if (request.type !== env.type) return { type: 'Refused', code: 'Malformed', message: 'message type does not match the envelope' };
    // The front end rate-limits and authorises by hint and tag; they must name this user.
    if (!bytesEqual(routingHint(request.userId), env.hint) || !bytesEqual(accountTag(request.userId), env.tag)) {
      return { type: 'Refused', code: 'AccountMismatch', message: 'routing hint or account tag does not match the user id' };
    }
    const recordId = hmacSha256(f.subkeys.recordId, utf8(request.userId));
    const handle = this.nextHandle++;
    if (this.open.size >= MAX_OPEN_REQUESTS) {
      const oldest = this.open.keys().next().value;
      if (oldest !== undefined) this.open.delete(oldest);
    }
    this.open.set(handle, { request, recordId, digest: sha256(env.enc, env.ciphertext), sealResponse: opened.sealResponse });
    return { type: 'Opened', handle, recordId };
  }

  /** Applies an opened request to the leader's tip, with the record's tree path from storage. */
  applyRequest(handle: number, nodes: Uint8Array[]): ApplyResult {
    const f = this.fleet;
    const l = this.leader;
    if (this.halted) return { type: 'Halted', message: this.halted };
    if (!f || !l) return { type: 'NotLeader' };
    const o = this.open.get(handle);
    if (!o) return { type: 'UnknownHandle' };
    if (l.pending.length >= f.config.policy.maxUncommitted || l.batch.digests.length >= MAX_BATCH) return { type: 'Busy' };
    const source = layered(l.overlay, proofSource(nodes));
    const found = lookup(f.tree, l.tree, o.recordId, source);
    if (found.type === 'MissingNode' || found.type === 'WrongRoot') return { type: 'StaleProof', recordId: o.recordId };
    if (found.type === 'CorruptNode') return { type: 'StaleProof', recordId: o.recordId };
    let slot: RecordSlot | undefined;
    let oldEpoch: number | undefined;
    if (found.type === 'Found') {
      oldEpoch = leafEpoch(found.value);
      const key = this.epochKeyFor(oldEpoch);
      const s = key ? openSlot(key, f.fleetId, o.recordId, found.value) : null;
      if (!s) {
        // The leaf is under a root this HSM certified, so it was sealed by the fleet: failing
        // to open it means a broken invariant, not a bad request.
        this.halt('a record on the tip does not open');
        return { type: 'Halted', message: this.halted! };
      }
      slot = s;
    }
    const ctx: VaultContext = { fleetId: f.fleetId, subkeys: f.subkeys, opaqueSetup: f.secrets.opaque, policy: f.config.policy, randomBytes: (n) => this.platform.randomBytes(n) };
    let outcome;
    try {
      outcome = applyVaultRequest(ctx, o.request, o.recordId, slot);
    } catch (e) {
      // OPAQUE rejects malformed protocol messages by throwing (e.g. a KE1 that is not a valid
      // group element). Nothing was written; the caller gets a sealed BadRequest.
      outcome = { response: { type: o.request.type as MessageType, outcome: 'Error' as const, code: (e instanceof ProtocolError ? e.code : 'BadRequest') as ErrorCode } };
    }
    if (outcome.write) {
      const leaf = sealSlot(f.epochKey, f.epoch, f.fleetId, o.recordId, outcome.write, this.platform.randomBytes(12));
      const up = upsert(f.tree, l.tree, o.recordId, leaf, source);
      if (up.type !== 'Updated') return { type: 'StaleProof', recordId: o.recordId };
      l.tree = up.root;
      for (const a of up.added) l.overlay.put(a.hash, a.node);
      l.batch.added.push(...up.added);
      l.batch.removed.push(...up.removed);
      this.countLeaf(oldEpoch, f.epoch);
    }
    this.open.delete(handle);
    const body = o.sealResponse(encodeResponse(outcome.response), this.platform.randomBytes(32));
    l.batch.digests.push(o.digest);
    l.batch.responses.push({ handle, response: { type: 'Sealed', body } });
    return { type: 'Applied' };
  }

  /** Closes the open batch into a MACed entry on the leader's chain. */
  closeBatch(epochNodes: Uint8Array[] = []): CloseBatchResult {
    const f = this.fleet;
    const l = this.leader;
    if (!f || !l) return { type: 'NotLeader' };
    if (l.batch.digests.length === 0 && l.epochDeltas.size === 0) return { type: 'Empty' };
    // Requests are refused at D uncommitted entries; an accounting-only batch must wait too.
    if (l.batch.digests.length === 0 && l.pending.length >= f.config.policy.maxUncommitted) return { type: 'Busy' };
    if (l.epochDeltas.size > 0) {
      const e = this.writeEpochState(epochNodes);
      if (e !== 'Ok') return { type: 'StaleProof', recordId: EPOCH_STATE_ID };
    }
    const previousEpochCount = l.epochState?.tracked ? (l.epochState.counts.get(f.epoch - 1) ?? 0) : Number.POSITIVE_INFINITY;
    const w = new Writer().label('bkv/v1/batch').u32(l.batch.digests.length);
    for (const d of l.batch.digests) w.fixed(d, 32);
    const body = { version: PROTOCOL_VERSION, index: l.tip.index + 1, prev: l.tip.hash, root: l.tree.hash, batchDigest: sha256(w.finish()), leader: this.memberId };
    const entry = encodeEntry({ ...body, mac: hmacSha256(f.subkeys.logEntry, entryMacInput(f.fleetId, body)) });
    const hash = entryHash(entry);
    l.tip = { index: body.index, hash };
    l.chain.set(body.index, hash);
    // A node created and superseded within one batch never needs to reach storage.
    const removedSet = new Set(l.batch.removed.map(toHex));
    const addedSet = new Set(l.batch.added.map((a) => toHex(a.hash)));
    const added = l.batch.added.filter((a) => !removedSet.has(toHex(a.hash)));
    const removed = l.batch.removed.filter((h) => !addedSet.has(toHex(h)));
    const { responses } = l.batch;
    l.pending.push({ index: body.index, hash, responses, added, previousEpochCount, epoch: f.epoch });
    l.recent.push({ index: body.index, added: l.batch.added });
    l.batch = { digests: [], responses: [], added: [], removed: [] };
    return { type: 'Proposed', entry, index: body.index, top: l.tree.top, added, removed };
  }

  /** Checks statements' MACs and membership; returns the valid ones, one per member (its highest). */
  private validStatements(cert: Certificate): { type: 'Ok'; byMember: Map<string, Statement> } | { type: 'Invalid'; reason: string } {
    const f = this.fleet;
    if (!f) return { type: 'Invalid', reason: 'no fleet' };
    if (cert.length === 0) return { type: 'Invalid', reason: 'empty certificate' };
    const byMember = new Map<string, Statement>();
    let rejected = '';
    for (const s of cert) {
      // The network between agents is untrusted: a forged statement is ignored, never counted.
      if (!f.config.members.some((m) => bytesEqual(m, s.member))) {
        rejected = 'statement from a non-member';
        continue;
      }
      if (!verifyHmacSha256(f.subkeys.capture, s.mac, statementMacInput(f.fleetId, s.member, s))) {
        rejected = 'bad statement MAC';
        continue;
      }
      const id = toHex(s.member);
      const prev = byMember.get(id);
      if (!prev || s.index > prev.index) byMember.set(id, s);
    }
    if (byMember.size === 0) return { type: 'Invalid', reason: rejected || 'no valid statement' };
    return { type: 'Ok', byMember };
  }

  private majority(): number {
    return Math.floor(this.fleet!.config.members.length / 2) + 1;
  }

  /**
   * Counts statements that lie on a known chain (index -> hash). A statement for a later entry
   * counts toward an earlier one only because the chain between them is known (DESIGN section 5).
   * Returns the highest index that a majority of members have reached on that chain.
   */
  private certifiedOnChain(byMember: Map<string, Statement>, chain: Map<number, Uint8Array>): number | undefined {
    const reached: number[] = [];
    for (const s of byMember.values()) {
      const h = chain.get(s.index);
      if (h && bytesEqual(h, s.hash)) reached.push(s.index);
    }
    if (reached.length < this.majority()) return undefined;
    reached.sort((a, b) => b - a);
    return reached[this.majority() - 1];
  }

  /**
   * Releases the responses of every entry on the leader's chain up to the highest entry that a
   * majority of members have persisted (I1: no response leaves before its entry is committed).
   * Statements may name different entries of the leader's chain; a certificate naming another
   * entry at an index the leader proposed makes it step down.
   */
  commit(cert: Certificate): CommitResult {
    const v = this.validStatements(cert);
    if (v.type !== 'Ok') return { type: 'InvalidCertificate', reason: v.reason };
    const exact = this.verifyCertificate(cert);
    const l = this.leader;
    if (exact.type === 'Ok') {
      const { index, hash } = exact.position;
      const mine = l?.chain.get(index);
      if (l && mine && !bytesEqual(mine, hash)) return { type: 'SteppedDown', released: this.stepDown() };
      if (!this.committed || index > this.committed.index) this.committed = { index, hash };
    }
    if (!l) {
      if (exact.type !== 'Ok') return { type: 'InvalidCertificate', reason: exact.reason };
      return { type: 'Committed', index: exact.position.index, released: [] };
    }
    const k = this.certifiedOnChain(v.byMember, l.chain);
    if (k === undefined) {
      if (exact.type === 'Ok') return { type: 'Committed', index: exact.position.index, released: [] };
      return { type: 'InvalidCertificate', reason: `statements on this leader's chain from fewer than ${this.majority()} members` };
    }
    const hash = l.chain.get(k)!;
    if (!this.committed || k > this.committed.index) this.committed = { index: k, hash };
    // An entry closed under an earlier epoch says nothing about the current previous key: a
    // ratchet may have happened since (its count was of an older epoch).
    const f = this.fleet!;
    if (l.pending.some((p) => p.index <= k && p.epoch === f.epoch && p.previousEpochCount === 0)) this.erasePreviousEpochKey();
    const released: ReleasedResponse[] = [];
    while (l.pending.length > 0 && l.pending[0]!.index <= k) released.push(...l.pending.shift()!.responses);
    for (const i of [...l.chain.keys()]) if (i < k) l.chain.delete(i);
    return { type: 'Committed', index: k, released };
  }

  /**
   * CaptureJump (DESIGN section 5): moves this member forward to (j, H) = the target entry, only
   * with statements from a majority of members on the chain from H given by `links` (entries
   * j+1, j+2, ... each MACed and linked). Never on one peer's word.
   */
  captureJump(target: Uint8Array, cert: Certificate, links: Uint8Array[]): CaptureResult | { type: 'InvalidCertificate'; reason: string } {
    const f = this.fleet;
    if (!f || this.halted) return { type: 'NoFleet' };
    const decodeChecked = (bytes: Uint8Array): LogEntry | undefined => {
      try {
        const e = decodeEntry(bytes);
        const { mac, ...body } = e;
        return e.version === PROTOCOL_VERSION && verifyHmacSha256(f.subkeys.logEntry, mac, entryMacInput(f.fleetId, body)) ? e : undefined;
      } catch {
        return undefined;
      }
    };
    const t = decodeChecked(target);
    if (!t) return { type: 'Malformed' };
    const from = this.captured?.index ?? this.nvram?.position.index ?? 0;
    if (t.index <= from) return { type: 'StaleIndex', index: t.index };
    const chain = new Map<number, Uint8Array>([[t.index, entryHash(target)]]);
    let prevIndex = t.index;
    let prevHash = entryHash(target);
    for (const bytes of links) {
      const e = decodeChecked(bytes);
      if (!e || e.index !== prevIndex + 1 || !bytesEqual(e.prev, prevHash)) return { type: 'InvalidCertificate', reason: 'links do not form a chain from the target' };
      prevIndex = e.index;
      prevHash = entryHash(bytes);
      chain.set(e.index, prevHash);
    }
    const v = this.validStatements(cert);
    if (v.type !== 'Ok') return { type: 'InvalidCertificate', reason: v.reason };
    if (this.certifiedOnChain(v.byMember, chain) === undefined) return { type: 'InvalidCertificate', reason: `no majority of ${this.majority()} members on this chain` };
    const steppedDown = this.leader ? this.stepDown() : undefined;
    this.captured = { index: t.index, hash: chain.get(t.index)!, root: t.root };
    const position = { index: t.index, hash: this.captured.hash };
    return steppedDown && steppedDown.length > 0 ? { type: 'Ok', position, steppedDown } : { type: 'Ok', position };
  }

  // ---- record epochs (DESIGN section 4; see epoch.ts) ----

  private epochKeyFor(epoch: number): Uint8Array | undefined {
    const f = this.fleet!;
    if (epoch === f.epoch) return f.epochKey;
    if (epoch === f.epoch - 1) return f.previousEpochKey;
    return undefined;
  }

  private countLeaf(oldEpoch: number | undefined, newEpoch: number): void {
    const d = this.leader!.epochDeltas;
    if (oldEpoch !== undefined) d.set(oldEpoch, (d.get(oldEpoch) ?? 0) - 1);
    d.set(newEpoch, (d.get(newEpoch) ?? 0) + 1);
  }

  /** Moves this HSM's keys forward to `epoch`, keeping only the key of epoch - 1 besides. */
  private advanceEpochTo(epoch: number): void {
    const f = this.fleet!;
    if (epoch <= f.epoch) return;
    let key = f.epochKey;
    let previous: Uint8Array | undefined;
    for (let e = f.epoch + 1; e <= epoch; e++) {
      previous = key;
      key = nextEpochKey(key, e);
    }
    f.epoch = epoch;
    f.epochKey = key;
    f.previousEpochKey = previous;
    this.saveEpochKeys();
  }

  private erasePreviousEpochKey(): void {
    const f = this.fleet!;
    if (!f.previousEpochKey) return;
    f.previousEpochKey = undefined;
    this.saveEpochKeys();
  }

  private saveEpochKeys(): void {
    const f = this.fleet!;
    const fleet = { ...this.secrets.fleet!, epoch: f.epoch, epochKey: f.epochKey };
    delete fleet.previousEpochKey;
    if (f.previousEpochKey) fleet.previousEpochKey = f.previousEpochKey;
    this.secrets = { ...this.secrets, fleet };
    this.platform.secrets.write(encodeHsmSecrets(this.secrets));
  }

  /**
   * Writes the open batch's epoch accounting into the tree, loading it first if needed (from the
   * overlay or nodes the agent ships, checked against the tip). Starts a new epoch when the
   * schedule says so and no record is left under the previous one.
   */
  private writeEpochState(nodes: Uint8Array[]): 'Ok' | 'Missing' {
    const f = this.fleet!;
    const l = this.leader!;
    const source = layered(l.overlay, proofSource(nodes));
    if (!l.epochState) {
      const found = lookup(f.tree, l.tree, EPOCH_STATE_ID, source);
      if (found.type === 'Found') {
        const st = openEpochState(f.subkeys.epochState, f.fleetId, found.value);
        if (!st) {
          this.halt('the epoch accounting leaf does not open');
          return 'Missing';
        }
        l.epochState = st;
      } else if (found.type === 'Absent') {
        l.epochState = { current: f.epoch, startedAt: this.platform.now(), counts: new Map(), tracked: l.startedOnEmptyTree };
      } else {
        return 'Missing';
      }
      this.advanceEpochTo(l.epochState.current);
    }
    const st = cloneEpochState(l.epochState);
    for (const [e, d] of l.epochDeltas) st.counts.set(e, (st.counts.get(e) ?? 0) + d);
    st.current = f.epoch;
    const previousLeft = st.counts.get(f.epoch - 1) ?? 0;
    if (st.tracked && previousLeft === 0 && !f.previousEpochKey && this.platform.now() - st.startedAt >= f.config.policy.epochIntervalMs) {
      // Ratchet: new leaves are sealed under epoch + 1 from the next request on.
      this.advanceEpochTo(f.epoch + 1);
      st.current = f.epoch;
      st.startedAt = this.platform.now();
    }
    const leaf = sealEpochState(f.subkeys.epochState, f.fleetId, st, this.platform.randomBytes(12));
    const up = upsert(f.tree, l.tree, EPOCH_STATE_ID, leaf, source);
    if (up.type !== 'Updated') return 'Missing';
    l.tree = up.root;
    for (const a of up.added) l.overlay.put(a.hash, a.node);
    l.batch.added.push(...up.added);
    l.batch.removed.push(...up.removed);
    l.epochState = st;
    l.epochDeltas = new Map();
    return 'Ok';
  }

  /**
   * Re-seals one record under the current epoch (the sweep after a ratchet). The agent names the
   * record and ships its path; the epoch counts, not the agent, decide when the sweep is done.
   */
  reseal(recordId: Uint8Array, nodes: Uint8Array[]): { type: 'Resealed' } | { type: 'Current' } | { type: 'Absent' } | { type: 'StaleProof' } | { type: 'NotLeader' } | { type: 'Busy' } {
    const f = this.fleet;
    const l = this.leader;
    if (!f || !l || this.halted) return { type: 'NotLeader' };
    if (l.pending.length >= f.config.policy.maxUncommitted) return { type: 'Busy' };
    const source = layered(l.overlay, proofSource(nodes));
    const found = lookup(f.tree, l.tree, recordId, source);
    if (found.type === 'Absent') return { type: 'Absent' };
    if (found.type !== 'Found') return { type: 'StaleProof' };
    const epoch = leafEpoch(found.value);
    if (epoch === f.epoch || bytesEqual(recordId, EPOCH_STATE_ID)) return { type: 'Current' };
    const key = this.epochKeyFor(epoch);
    const slot = key ? openSlot(key, f.fleetId, recordId, found.value) : null;
    if (!slot) {
      this.halt('a record on the tip does not open');
      return { type: 'NotLeader' };
    }
    const up = upsert(f.tree, l.tree, recordId, sealSlot(f.epochKey, f.epoch, f.fleetId, recordId, slot, this.platform.randomBytes(12)), source);
    if (up.type !== 'Updated') return { type: 'StaleProof' };
    l.tree = up.root;
    for (const a of up.added) l.overlay.put(a.hash, a.node);
    l.batch.added.push(...up.added);
    l.batch.removed.push(...up.removed);
    this.countLeaf(epoch, f.epoch);
    return { type: 'Resealed' };
  }

  /** Makes the open batch carry the epoch accounting even if it writes no leaf (sweep steps). */
  touchEpochState(): void {
    const l = this.leader;
    const f = this.fleet;
    if (!l || !f) return;
    if (l.epochDeltas.size === 0) l.epochDeltas.set(f.epoch, 0);
  }

  /** The epoch this HSM seals under, and whether it still holds the previous epoch's key. */
  epochInfo(): { epoch: number; holdsPrevious: boolean } | undefined {
    const f = this.fleet;
    return f ? { epoch: f.epoch, holdsPrevious: f.previousEpochKey !== undefined } : undefined;
  }

  /**
   * A follower learns the epoch from the accounting leaf under the root it captured, and moves
   * its keys forward. It then holds epoch n and n - 1 only: n - 2 is gone, and the leader starts
   * epoch n only after no record is left under n - 2 (DESIGN section 4: every member erases).
   */
  learnEpoch(nodes: Uint8Array[]): { type: 'Ok'; epoch: number } | { type: 'Missing' } | { type: 'NoFleet' } {
    const f = this.fleet;
    if (!f || !this.captured || this.halted) return { type: 'NoFleet' };
    if (this.leader) return { type: 'Ok', epoch: f.epoch };
    const found = lookup(f.tree, { top: proofTop(nodes), hash: this.captured.root }, EPOCH_STATE_ID, proofSource(nodes));
    if (found.type === 'Absent') return { type: 'Ok', epoch: f.epoch };
    if (found.type !== 'Found') return { type: 'Missing' };
    const st = openEpochState(f.subkeys.epochState, f.fleetId, found.value);
    if (!st) return { type: 'Missing' };
    this.advanceEpochTo(st.current);
    return { type: 'Ok', epoch: f.epoch };
  }

  /**
   * Keeps the overlay to the nodes of the open batch and of the last W entries (DESIGN section 5):
   * older entries are captured, so storage holds their nodes durably.
   */
  private pruneOverlay(): void {
    const l = this.leader;
    const f = this.fleet;
    if (!l || !f || !this.captured) return;
    const keepFrom = this.captured.index - f.config.policy.overlayWindow;
    while (l.recent.length > 0 && l.recent[0]!.index <= keepFrom) {
      for (const a of l.recent.shift()!.added) l.overlay.delete(a.hash);
    }
    // No node belongs to two entries: every leaf is sealed with a fresh nonce, so every node on
    // its path is new. (If one ever did, a missing node only costs a StaleProof and a retry.)
  }
}
