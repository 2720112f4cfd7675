/**
 * The agent drives one HSM (DESIGN section 3): it does the HSM's network and storage I/O and
 * nothing that safety depends on.
 *
 * Every member's agent shows its HSM each entry storage holds (capture), persists and answers
 * peers' requests for its statement. The agent that holds the storage lease leads: it gathers
 * requests into batches, has its HSM apply them and MAC an entry, writes entry and tree nodes in
 * one conditional transaction, and collects statements from a majority of members so that its
 * HSM releases the batch's responses. A fleet of one is the same code with no peers.
 */
import type { Logger } from 'pino';
import { HsmCore, memberIdOf, type MemberIdentity, type ReleasedResponse } from '../hsm/core.js';
import type { Platform } from '../hsm/platform.js';
import type { FleetConfig } from '../hsm/keys.js';
import type { FleetPublicKeys } from '../protocol/fleet.js';
import type { RequestEnvelope } from '../protocol/channel.js';
import { decodeStatement, encodeStatement, entryHash, type Statement } from '../protocol/log.js';
import type { ErrorCode } from '../protocol/errors.js';
import { fromBase64, toBase64, toHex } from '../crypto/bytes.js';
import type { Storage } from '../storage/types.js';
import { collectPath, collectStaleLeaves } from './proof.js';
import { EPOCH_STATE_ID } from '../hsm/epoch.js';
import { opaqueReady } from '../crypto/opaque.js';
import { AgentError, catchUp, type CatchUpEvents } from './capture.js';

export type AgentReply = { type: 'Sealed'; body: Uint8Array } | { type: 'Error'; code: ErrorCode; message: string };

interface Waiting {
  env: RequestEnvelope;
  resolve(r: AgentReply): void;
  retries: number;
}

export interface AgentOptions {
  platform: Platform;
  storage: Storage;
  log: Logger;
  /** Creates a single-member fleet inside the HSM if it has none (`bkv dev`). */
  createFleet?: { policy?: Partial<FleetConfig['policy']>; routes?: FleetConfig['routes'] };
  /** Agent URLs of the other members. None: a fleet of one. */
  peers?: string[];
  /** Entries kept below the latest certificate before nodes and entries are compacted. */
  compactGraceEntries?: number;
  /** Requests in flight before new ones are refused as unavailable (back-pressure). */
  maxQueue?: number;
  /** Leader lease duration (liveness only). */
  leaseMs?: number;
  /** How long a batch stays open for more requests. */
  batchWindowMs?: number;
}

export { AgentError };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const yieldToIo = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Serialises async sections that drive the HSM (capture must not interleave with itself). */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(f: () => Promise<T>): Promise<T> {
    const result = this.tail.then(f);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

export class Agent {
  private queue: Waiting[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private running = false;
  private top: Uint8Array | null = null;
  private closed = false;
  private active = false;
  private ticker: NodeJS.Timeout | undefined;
  private readonly grace: number;
  private readonly maxQueue: number;
  private readonly leaseMs: number;
  private readonly batchWindowMs: number;
  private readonly peers: string[];
  private readonly hsmLock = new Mutex();
  private lastCompacted = 0;
  private lastError = '';
  private committing: Promise<boolean> | undefined;
  /** Set while commits fail (no majority answers): new requests are then refused at once. */
  private commitFailingSince: number | undefined;
  private readonly captureEvents: CatchUpEvents = {
    top: (top) => {
      this.top = top;
    },
    steppedDown: (released) => this.deliver(released),
    jumped: (index) => this.log.info({ index }, 'jumped to a certified entry'),
  };
  stats = { batches: 0, requests: 0, appendsMs: 0, commitWaitMs: 0, leaderSince: 0 };

  private constructor(
    readonly hsm: HsmCore,
    private readonly storage: Storage,
    private readonly log: Logger,
    opts: AgentOptions,
  ) {
    this.grace = opts.compactGraceEntries ?? 1000;
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.leaseMs = opts.leaseMs ?? 1500;
    this.batchWindowMs = opts.batchWindowMs ?? 2;
    this.peers = opts.peers ?? [];
  }

  /** Boots the HSM. With a fleet (or `createFleet`) the agent starts serving; else it awaits a ceremony. */
  static async start(opts: AgentOptions): Promise<Agent> {
    await opaqueReady; // the OPAQUE library is WebAssembly: loaded before the HSM runs
    const hsm = HsmCore.boot(opts.platform);
    const agent = new Agent(hsm, opts.storage, opts.log, opts);
    if (!hsm.publicKeys() && opts.createFleet) {
      await agent.createFleet([hsm.identity()], opts.createFleet);
    }
    if (hsm.publicKeys()) await agent.activate();
    return agent;
  }

  get memberHex(): string {
    return toHex(this.hsm.memberId);
  }

  get isActive(): boolean {
    return this.active;
  }

  // ---- key ceremony ----

  /**
   * Creates the fleet inside this HSM for the given members (this one included), writes the
   * genesis entry, and returns the fleet keys wrapped to each other member.
   */
  async createFleet(members: MemberIdentity[], opts: { policy?: Partial<FleetConfig['policy']>; routes?: FleetConfig['routes'] } = {}): Promise<{ fleetId: Uint8Array; genesis: Uint8Array; wrapped: { member: MemberIdentity; blob: Uint8Array }[] }> {
    if (await this.storage.latestEntry()) throw new AgentError('Halted', 'storage already holds a log: refusing to start a second log on it');
    const created = this.hsm.createFleet({ ...opts, members: members.map((m) => memberIdOf(m)) });
    if (created.type !== 'Created') throw new AgentError('BadRequest', 'this HSM already holds a fleet');
    const appended = await this.storage.appendEntry({ index: 0, entry: created.genesis, top: null }, [], []);
    if (appended.type !== 'Appended') throw new AgentError('Halted', 'storage already holds a genesis entry');
    const wrapped: { member: MemberIdentity; blob: Uint8Array }[] = [];
    for (const m of members) {
      if (toHex(memberIdOf(m)) === this.memberHex) continue;
      const w = this.hsm.exportFleet(m);
      if (w.type !== 'Wrapped') throw new AgentError('Internal', `cannot wrap the fleet keys: ${w.type}`);
      wrapped.push({ member: m, blob: w.blob });
    }
    this.log.info({ fleetId: toHex(created.fleetId), members: members.length }, 'created a new fleet: keys generated inside this HSM');
    return { fleetId: created.fleetId, genesis: created.genesis, wrapped };
  }

  async joinFleet(blob: Uint8Array, genesis: Uint8Array): Promise<void> {
    const r = this.hsm.joinFleet(blob, genesis);
    if (r.type !== 'Joined') throw new AgentError('BadRequest', r.type === 'Invalid' ? r.reason : 'this HSM already holds a fleet');
    this.log.info({ fleetId: toHex(r.fleetId) }, 'joined the fleet');
  }

  /** Starts serving: catch up with storage, then run the lease and capture loop. */
  async activate(): Promise<void> {
    if (this.active) return;
    await this.hsmLock.run(() => this.catchUp());
    if (!(await this.persist())) throw new AgentError('Halted', 'could not persist the position');
    this.active = true;
    await this.tick();
    this.ticker = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.leaseMs / 3)));
  }

  /** Catch-up and jump (capture.ts): the same code the simulator runs against hostile storage. */
  private catchUp(): Promise<void> {
    return catchUp(this.hsm, this.storage, this.captureEvents);
  }

  private async persist(): Promise<boolean> {
    for (let i = 0; i < 1000; i++) {
      const p = this.hsm.persist();
      if (p.type === 'Persisted' || p.type === 'Unchanged') return true;
      if (p.type === 'NothingCaptured') return false;
      await sleep(Math.max(1, Math.ceil(p.waitMs)));
    }
    return false;
  }

  /** Lease upkeep and, on followers, capture. Runs every leaseMs / 3. */
  private async tick(): Promise<void> {
    if (this.closed || !this.active) return;
    try {
      // A halted HSM must not keep the lease: another member has to be able to lead.
      if (this.hsm.status().halted) return;
      const lease = await this.storage.acquireLease(this.memberHex, this.leaseMs, Date.now());
      const mine = lease.holder === this.memberHex;
      if (!mine && this.hsm.isLeader()) {
        this.log.warn('lost the leader lease: stepping down');
        this.deliver(this.hsm.stepDown());
      }
      if (this.hsm.isLeader() && this.hsm.epochInfo()?.holdsPrevious && this.queue.length === 0 && !this.running) {
        await this.sweepStep();
      }
      if (!this.hsm.isLeader()) {
        await this.hsmLock.run(async () => {
          await this.catchUp();
          await this.persist();
          this.hsm.learnEpoch(await collectPath(this.storage, this.top, EPOCH_STATE_ID));
          if (mine) {
            const became = this.hsm.becomeLeader(this.top);
            if (became.type === 'Ok') {
              this.stats.leaderSince = Date.now();
              // A new term owes nothing to the last one's failed commits: with that timer still
              // set it would refuse every request, never propose, never learn that it is stale,
              // and keep renewing the lease (found by the simulator).
              this.commitFailingSince = undefined;
              this.log.info({ index: became.position.index }, 'leading');
            } else {
              // Holding the lease without leading would stop every other member from leading.
              this.log.warn({ result: became.type }, 'cannot lead: giving up the lease');
              await this.storage.releaseLease(this.memberHex);
            }
          }
        });
      }
      this.lastError = '';
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastError) this.log.error({ err: msg }, 'agent tick failed');
      this.lastError = msg;
    }
  }

  publicKeys(): FleetPublicKeys {
    return this.hsm.publicKeys()!;
  }

  fleetConfig(): FleetConfig {
    return this.hsm.fleetConfig()!;
  }

  /** Queues a request; resolves with the sealed response once its entry is committed. */
  submit(env: RequestEnvelope): Promise<AgentReply> {
    if (this.closed) return Promise.resolve({ type: 'Error', code: 'Unavailable', message: 'agent is shutting down' });
    if (!this.hsm.isLeader()) return Promise.resolve({ type: 'Error', code: 'NotLeader', message: 'this member does not lead' });
    if (this.commitFailingSince !== undefined && Date.now() - this.commitFailingSince > 3000) {
      return Promise.resolve({ type: 'Error', code: 'Unavailable', message: 'the fleet cannot commit: no majority of its members answers' });
    }
    if (this.queue.length >= this.maxQueue) return Promise.resolve({ type: 'Error', code: 'Unavailable', message: 'agent overloaded' });
    return new Promise((resolve) => {
      this.queue.push({ env, resolve, retries: 0 });
      if (!this.running) void this.run();
    });
  }

  /** A peer's request: capture what storage holds, persist, and return this member's statement. */
  async statementFor(index: number): Promise<Statement | undefined> {
    if (!this.active) return undefined;
    return this.hsmLock.run(async () => {
      const st = this.hsm.status();
      if (!this.hsm.isLeader() && (st.captured?.index ?? -1) < index) await this.catchUp();
      await this.persist();
      const s = this.hsm.statement();
      return s.type === 'Ok' ? s.statement : undefined;
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while ((this.queue.length > 0 || this.waiting.size > 0) && !this.closed) {
        if (!this.hsm.isLeader()) {
          this.failAll('NotLeader', 'this member no longer leads');
          this.deliver(this.hsm.stepDown());
          break;
        }
        // Let requests that arrived meanwhile join this batch (batches close by time or count).
        await yieldToIo();
        if (this.batchWindowMs > 0 && this.queue.length < 64) await sleep(this.batchWindowMs);
        if (this.queue.length > 0) await this.hsmLock.run(() => this.proposeBatch());
        // Statements are gathered while the next batch forms: up to D entries wait for commit.
        if (this.waiting.size > 0 && !this.committing) {
          this.committing = this.commitPending()
            .catch((e: Error) => {
              this.log.error({ err: e.message }, 'commit failed: stepping down');
              this.deliver(this.hsm.stepDown());
              return false;
            })
            .finally(() => {
              this.committing = undefined;
            });
        }
        if (this.queue.length === 0 && this.committing && !(await this.committing)) await sleep(50);
      }
      if (this.committing) await this.committing;
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'batch failed; failing queued requests');
      this.deliver(this.hsm.stepDown());
      this.failAll('Unavailable', 'the vault could not commit the request');
    } finally {
      this.running = false;
    }
  }

  private failAll(code: ErrorCode, message: string): void {
    const q = this.queue;
    this.queue = [];
    for (const w of q) w.resolve({ type: 'Error', code, message });
  }

  private async proposeBatch(): Promise<void> {
    const items = this.queue.splice(0, 512);
    const retry: Waiting[] = [];
    let applied = 0;
    // Every item leaves this loop answered, waiting for commit, or queued for retry.
    for (const w of items) {
      try {
        if (await this.applyOne(w, retry)) applied++;
      } catch (e) {
        // Storage failed under this request: answer it; nothing was applied for it.
        w.resolve({ type: 'Error', code: 'Unavailable', message: 'storage error' });
        this.log.error({ err: (e as Error).message }, 'request failed before it was applied');
      }
    }
    this.queue.unshift(...retry);
    await this.closeAndWrite(applied);
  }

  /** Opens and applies one request; true when the HSM applied it (its response now waits for commit). */
  private async applyOne(w: Waiting, retry: Waiting[]): Promise<boolean> {
    const o = this.hsm.openRequest(w.env);
    if (o.type === 'Refused') {
      w.resolve({ type: 'Error', code: o.code, message: o.message });
      return false;
    }
    const nodes = await collectPath(this.storage, this.top, o.recordId);
    const a = this.hsm.applyRequest(o.handle, nodes);
    switch (a.type) {
      case 'Applied':
        this.waiting.set(o.handle, w);
        return true;
      case 'Busy':
        // D entries await commit: try again once some are committed.
        retry.push(w);
        return false;
      case 'StaleProof':
        // Retried after this batch is durable; storage then holds the path the HSM needs.
        if (w.retries++ < 3) retry.push(w);
        else w.resolve({ type: 'Error', code: 'Unavailable', message: 'could not apply the request' });
        return false;
      case 'Halted':
        w.resolve({ type: 'Error', code: 'Halted', message: 'the HSM has halted' });
        return false;
      default:
        w.resolve({ type: 'Error', code: a.type === 'NotLeader' ? 'NotLeader' : 'Unavailable', message: `HSM: ${a.type}` });
        return false;
    }
  }

  /** Closes the batch into an entry, writes it with its nodes, and captures it back. */
  private async closeAndWrite(applied: number): Promise<void> {
    const proposed = this.hsm.closeBatch(await collectPath(this.storage, this.top, EPOCH_STATE_ID));
    if (proposed.type !== 'Proposed') return;
    const t0 = performance.now();
    const appended = await this.storage.appendEntry({ index: proposed.index, entry: proposed.entry, top: proposed.top }, proposed.added, proposed.removed);
    this.stats.appendsMs += performance.now() - t0;
    if (appended.type !== 'Appended') {
      // Another writer took the index: our entry is not the one storage holds. Step down.
      this.log.warn({ index: proposed.index }, 'log index taken by another writer: stepping down');
      this.deliver(this.hsm.stepDown());
      return;
    }
    this.top = proposed.top;
    this.stats.batches++;
    this.stats.requests += applied;
    // Capture only what storage returns after the durable append (DESIGN section 5).
    const readBack = await this.storage.readEntries(proposed.index, 1);
    const cap = this.hsm.captureNext(readBack.map((e) => e.entry));
    if (cap.type !== 'Ok') {
      this.deliver(this.hsm.stepDown());
      throw new AgentError('Halted', `capture of our own entry failed: ${cap.type}`);
    }
    if (cap.steppedDown) this.deliver(cap.steppedDown);
  }

  /**
   * After a ratchet, re-seals records still under the previous epoch, a few at a time. The HSM's
   * epoch counts decide when the sweep is complete and the old key can be erased.
   */
  private async sweepStep(): Promise<void> {
    this.running = true;
    try {
      await this.hsmLock.run(async () => {
        const epoch = this.hsm.epochInfo()!.epoch;
        const stale = await collectStaleLeaves(this.storage, this.top, epoch, 128);
        let touched = 0;
        for (const id of stale) {
          const r = this.hsm.reseal(id, await collectPath(this.storage, this.top, id));
          if (r.type === 'Resealed') touched++;
        }
        // An empty batch still carries the accounting: it is how the count reaching zero commits.
        this.hsm.touchEpochState();
        await this.closeAndWrite(0);
        if (touched > 0) this.log.info({ resealed: touched, epoch }, 'epoch sweep');
      });
      await this.commitPending();
    } finally {
      this.running = false;
    }
  }

  /** Gathers statements from a majority and lets the HSM release what they certify. */
  private async commitPending(): Promise<boolean> {
    const t0 = performance.now();
    const own = await this.hsmLock.run(async () => {
      if (!(await this.persist())) throw new AgentError('Halted', 'NVRAM persist failed');
      const st = this.hsm.statement();
      if (st.type !== 'Ok') throw new AgentError('Halted', 'no statement');
      return st.statement;
    });
    // The HSM is not held while peers answer: the next batch can be proposed meanwhile.
    const statements = [own, ...(await this.gatherStatements(own.index))];
    const c = await this.hsmLock.run(async () => this.hsm.commit(statements));
    this.stats.commitWaitMs += performance.now() - t0;
    if (c.type === 'InvalidCertificate') {
      this.commitFailingSince ??= Date.now();
      return false;
    }
    this.deliver(c.released);
    if (c.type !== 'Committed') return false;
    this.commitFailingSince = undefined;
    await this.storeCertificate(c.index, statements);
    if (c.index - this.lastCompacted >= Math.max(1, Math.floor(this.grace / 4)) && c.index > this.grace) {
      this.lastCompacted = c.index;
      await this.storage.compact(c.index - this.grace);
    }
    return true;
  }

  /** Keeps the statements that certify `index`, for laggards to jump with after compaction. */
  private async storeCertificate(index: number, statements: Statement[]): Promise<void> {
    const at = statements.find((x) => x.index === index)?.hash ?? (await this.storage.readEntries(index, 1)).map((e) => entryHash(e.entry))[0];
    if (!at) return;
    await this.storage.putCertificate({ index, hash: at, statements: statements.filter((x) => x.index >= index).map(encodeStatement) });
  }

  /** Asks every peer for its statement; returns as soon as a majority (with ours) has answered. */
  private gatherStatements(index: number): Promise<Statement[]> {
    if (this.peers.length === 0) return Promise.resolve([]);
    const needed = Math.floor((this.peers.length + 1) / 2); // peers needed besides ourselves
    return new Promise((resolve) => {
      const got: Statement[] = [];
      let settled = 0;
      let done = false;
      const finish = (): void => {
        if (!done) {
          done = true;
          resolve(got);
        }
      };
      for (const peer of this.peers) {
        void requestStatement(peer, index)
          .then((s) => {
            if (s) got.push(s);
          })
          .finally(() => {
            settled++;
            if (got.length >= needed || settled === this.peers.length) finish();
          });
      }
    });
  }

  private deliver(released: ReleasedResponse[]): void {
    for (const r of released) {
      const w = this.waiting.get(r.handle);
      if (!w) continue;
      this.waiting.delete(r.handle);
      if (r.response.type === 'Sealed') w.resolve({ type: 'Sealed', body: r.response.body });
      else w.resolve({ type: 'Error', code: 'OutcomeUnknown', message: 'the outcome is unknown: a guess may have been spent' });
    }
  }

  /** Runs compaction now with the given grace (operators and tests). */
  async compactNow(grace: number): Promise<{ nodes: number; entries: number }> {
    const cert = await this.storage.latestCertificate();
    if (!cert) return { nodes: 0, entries: 0 };
    return this.storage.compact(Math.max(0, cert.index - grace));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    while (this.running) await sleep(5);
    this.failAll('Unavailable', 'agent is shutting down');
    this.deliver(this.hsm.stepDown());
  }
}

/** POST <peer>/agent/v1/statement: the peer's HSM statement (MACed; the network is untrusted). */
async function requestStatement(peer: string, index: number): Promise<Statement | undefined> {
  try {
    const res = await fetch(`${peer}/agent/v1/statement`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ index }), signal: AbortSignal.timeout(2000) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { statement?: unknown };
    if (typeof body.statement !== 'string' || body.statement.length > 512) return undefined;
    return decodeStatement(fromBase64(body.statement));
  } catch {
    return undefined;
  }
}

export function statementToJson(s: Statement): { statement: string } {
  return { statement: toBase64(encodeStatement(s)) };
}
