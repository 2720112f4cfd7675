/**
 * A simulated agent: the algorithm of src/agent/agent.ts, step for step, over simulated storage,
 * network and clock. Catch-up and jump are not copied: both agents run src/agent/capture.ts, and
 * both read record paths with src/agent/proof.ts. What is mirrored here is the control flow the
 * real agent spreads over timers, HTTP and a mutex:
 *
 *   tick()            Agent.tick: lease, step down when it is lost, an epoch sweep step,
 *                     catch up, persist, learn the epoch, lead
 *   submit()          Agent.submit
 *   runIteration()    one turn of Agent.run: proposeBatch (applyOne, closeAndWrite), then
 *                     commitPending, split in two halves around the statement round trip
 *                     (gatherStatements over the simulated network instead of fetch); the
 *                     next batch is proposed while a round is open, as the real loop does
 *   statementFor()    the peer endpoint POST /agent/v1/statement
 *
 * The real agent's HSM lock is held around each group of HSM calls, never across a statement
 * round; here each such group runs within one step of the simulation, which gives the same.
 */
import { AgentError, catchUp, type CatchUpEvents } from '../src/agent/capture.js';
import { collectPath, collectStaleLeaves } from '../src/agent/proof.js';
import { EPOCH_STATE_ID } from '../src/hsm/epoch.js';
import type { ReleasedResponse } from '../src/hsm/core.js';
import type { RequestEnvelope } from '../src/protocol/channel.js';
import type { ErrorCode } from '../src/protocol/errors.js';
import { encodeStatement, entryHash, type Statement } from '../src/protocol/log.js';
import { toHex } from '../src/crypto/bytes.js';
import { Crash, type SimHsm } from './hsm.js';
import { FRONT_END, type Message } from './network.js';
import type { SimStorage } from './storage.js';

export type AgentReply = { type: 'Sealed'; body: Uint8Array } | { type: 'Error'; code: ErrorCode; message: string };

interface Waiting {
  callKey: string;
  flow: number;
  env: RequestEnvelope;
  retries: number;
}

export interface AgentHost {
  now(): number;
  /** The agent waits: simulated time passes (nothing else happens meanwhile). */
  sleep(ms: number): void;
  send(from: number, to: number, msg: Message): void;
  peers(member: number): number[];
  /** A word for the trace. */
  note(s: string): void;
}

export interface AgentOptions {
  leaseMs: number;
  graceEntries: number;
  maxQueue: number;
  statementTimeoutMs: number;
}

interface Gather {
  round: number;
  own: Statement;
  got: Statement[];
  answered: Set<number>;
  needed: number;
  peers: number;
  deadline: number;
}

const rethrowCrash = (e: unknown): void => {
  if (e instanceof Crash) throw e;
};

export class SimAgent {
  queue: Waiting[] = [];
  readonly waiting = new Map<number, Waiting>();
  running = false;
  active = false;
  top: Uint8Array | null = null;
  lastError = '';
  /** The open statement round of a commit in flight (Agent.committing). */
  gather: Gather | undefined;
  /** The loop has ended and waits for its commit (Agent.run after the while). */
  private stopping = false;
  /** A sweep step holds `running` (Agent.sweepStep). */
  private sweeping = false;
  /** Set while commits fail: after 3 s new requests are refused (Agent.commitFailingSince). */
  private commitFailingSince: number | undefined;
  nextTickAt = 0;
  private round = 0;
  private lastCompacted = 0;
  readonly memberHex: string;
  private readonly events: CatchUpEvents = {
    top: (top) => {
      this.top = top;
    },
    steppedDown: (released) => this.deliver(released),
  };

  constructor(
    readonly member: number,
    readonly hsm: SimHsm,
    readonly storage: SimStorage,
    private readonly host: AgentHost,
    private readonly opts: AgentOptions,
  ) {
    this.memberHex = toHex(hsm.core.memberId);
  }

  /** Agent.activate: catch up with storage and persist; a failure ends the process. */
  async activate(): Promise<void> {
    await catchUp(this.hsm, this.storage, this.events);
    if (!(await this.persist())) throw new AgentError('Halted', 'could not persist the position');
    this.active = true;
    await this.tick();
  }

  private async persist(): Promise<boolean> {
    for (let i = 0; i < 1000; i++) {
      const p = this.hsm.persist();
      if (p.type === 'Persisted' || p.type === 'Unchanged') return true;
      if (p.type === 'NothingCaptured') return false;
      this.host.sleep(Math.max(1, Math.ceil(p.waitMs)));
    }
    return false;
  }

  /** Agent.tick. */
  async tick(): Promise<void> {
    this.nextTickAt = this.host.now() + Math.max(50, Math.floor(this.opts.leaseMs / 3));
    if (!this.active) return;
    try {
      // A halted HSM must not keep the lease: another member has to be able to lead.
      if (this.hsm.status().halted) return;
      const lease = await this.storage.acquireLease(this.memberHex, this.opts.leaseMs, this.host.now());
      const mine = lease.holder === this.memberHex;
      if (!mine && this.hsm.isLeader()) this.deliver(this.hsm.stepDown());
      if (this.hsm.isLeader() && this.hsm.epochInfo()?.holdsPrevious && this.queue.length === 0 && !this.running) {
        await this.sweepStep();
      }
      if (!this.hsm.isLeader()) {
        await catchUp(this.hsm, this.storage, this.events);
        await this.persist();
        this.hsm.learnEpoch(await collectPath(this.storage, this.top, EPOCH_STATE_ID));
        if (mine) {
          const became = this.hsm.becomeLeader(this.top);
          this.host.note(`becomeLeader:${became.type}`);
          if (became.type === 'Ok') this.commitFailingSince = undefined;
          else await this.storage.releaseLease(this.memberHex);
        }
      }
      this.lastError = '';
    } catch (e) {
      rethrowCrash(e);
      this.lastError = (e as Error).message;
    }
  }

  /** Agent.submit. */
  submit(callKey: string, flow: number, env: RequestEnvelope): void {
    const w: Waiting = { callKey, flow, env, retries: 0 };
    if (!this.hsm.isLeader()) return this.reply(w, { type: 'Error', code: 'NotLeader', message: 'this member does not lead' });
    if (this.commitFailingSince !== undefined && this.host.now() - this.commitFailingSince > 3000) {
      return this.reply(w, { type: 'Error', code: 'Unavailable', message: 'the fleet cannot commit: no majority of its members answers' });
    }
    if (this.queue.length >= this.opts.maxQueue) return this.reply(w, { type: 'Error', code: 'Unavailable', message: 'agent overloaded' });
    this.queue.push(w);
    if (!this.running) {
      this.running = true;
      this.stopping = false;
    }
  }

  private get settled(): boolean {
    const g = this.gather;
    return g !== undefined && (g.got.length >= g.needed || g.answered.size >= g.peers || this.host.now() >= g.deadline);
  }

  /**
   * Whether the run loop (or a sweep's commit) has something to do now. The loop proposes the
   * next batch while a statement round is open; with nothing to propose it waits for the round.
   */
  get runnable(): boolean {
    if (this.settled) return true;
    if (!this.running || this.stopping || this.sweeping) return false;
    return this.queue.length > 0 || !this.gather;
  }

  /** One turn of Agent.run (or the completion of the commit it started). */
  async runIteration(): Promise<void> {
    if (!this.runnable) return;
    if (this.settled) {
      await this.finishCommit();
      // The loop, the sweep, or what was left of the loop after it broke, waited for this commit.
      if (this.sweeping || this.stopping) {
        this.sweeping = false;
        this.stopping = false;
        this.running = false;
      }
      return;
    }
    try {
      if (this.queue.length === 0 && this.waiting.size === 0) return this.endLoop();
      if (!this.hsm.isLeader()) {
        this.failAll('NotLeader', 'this member no longer leads');
        this.deliver(this.hsm.stepDown());
        return this.endLoop();
      }
      if (this.queue.length > 0) await this.proposeBatch();
      // Statements are gathered while the next batch forms: up to D entries wait for commit.
      if (this.waiting.size > 0 && !this.gather) await this.startCommit();
    } catch (e) {
      rethrowCrash(e);
      this.deliver(this.hsm.stepDown());
      this.failAll('Unavailable', 'the vault could not commit the request');
      this.endLoop();
    }
  }

  /** The loop is over; `running` stays set until a commit it started has finished. */
  private endLoop(): void {
    if (this.gather) this.stopping = true;
    else this.running = false;
  }

  private failAll(code: ErrorCode, message: string): void {
    const q = this.queue;
    this.queue = [];
    for (const w of q) this.reply(w, { type: 'Error', code, message });
  }

  private reply(w: Waiting, reply: AgentReply): void {
    this.host.send(this.member, FRONT_END, { kind: 'reply', callKey: w.callKey, flow: w.flow, reply });
  }

  private async proposeBatch(): Promise<void> {
    const items = this.queue.splice(0, 512);
    this.host.note(`propose:${items.length}`);
    const retry: Waiting[] = [];
    let applied = 0;
    for (const w of items) {
      try {
        if (await this.applyOne(w, retry)) applied++;
      } catch (e) {
        rethrowCrash(e);
        this.reply(w, { type: 'Error', code: 'Unavailable', message: 'storage error' });
      }
    }
    this.queue.unshift(...retry);
    await this.closeAndWrite(applied);
  }

  private async applyOne(w: Waiting, retry: Waiting[]): Promise<boolean> {
    const o = this.hsm.openRequest(w.env);
    if (o.type === 'Refused') {
      this.reply(w, { type: 'Error', code: o.code, message: o.message });
      return false;
    }
    const nodes = await collectPath(this.storage, this.top, o.recordId);
    const a = this.hsm.applyRequest(o.handle, nodes);
    switch (a.type) {
      case 'Applied':
        this.waiting.set(o.handle, w);
        return true;
      case 'Busy':
        retry.push(w);
        return false;
      case 'StaleProof':
        if (w.retries++ < 3) retry.push(w);
        else this.reply(w, { type: 'Error', code: 'Unavailable', message: 'could not apply the request' });
        return false;
      case 'Halted':
        this.reply(w, { type: 'Error', code: 'Halted', message: 'the HSM has halted' });
        return false;
      default:
        this.reply(w, { type: 'Error', code: a.type === 'NotLeader' ? 'NotLeader' : 'Unavailable', message: `HSM: ${a.type}` });
        return false;
    }
  }

  private async closeAndWrite(_applied: number): Promise<void> {
    const proposed = this.hsm.closeBatch(await collectPath(this.storage, this.top, EPOCH_STATE_ID));
    if (proposed.type !== 'Proposed') return;
    const appended = await this.storage.appendEntry({ index: proposed.index, entry: proposed.entry, top: proposed.top }, proposed.added, proposed.removed);
    if (appended.type !== 'Appended') {
      this.deliver(this.hsm.stepDown());
      return;
    }
    this.top = proposed.top;
    const readBack = await this.storage.readEntries(proposed.index, 1);
    const cap = this.hsm.captureNext(readBack.map((e) => e.entry));
    if (cap.type !== 'Ok') {
      this.deliver(this.hsm.stepDown());
      throw new AgentError('Halted', `capture of our own entry failed: ${cap.type}`);
    }
    if (cap.steppedDown) this.deliver(cap.steppedDown);
  }

  /**
   * Agent.sweepStep: after a ratchet, re-seal records still under the previous epoch, close and
   * write the batch, then commit it (the commit's second half runs when its round settles). While
   * a sweep step runs, `running` is set: requests queue, and the loop starts at the next submit.
   */
  private async sweepStep(): Promise<void> {
    this.running = true;
    this.sweeping = true;
    try {
      const epoch = this.hsm.epochInfo()!.epoch;
      const stale = await collectStaleLeaves(this.storage, this.top, epoch, 128);
      for (const id of stale) this.hsm.reseal(id, await collectPath(this.storage, this.top, id));
      this.hsm.touchEpochState();
      await this.closeAndWrite(0);
      await this.startCommit();
    } finally {
      if (!this.gather) {
        this.running = false;
        this.sweeping = false;
      }
    }
  }

  /**
   * commitPending, first half (under the HSM lock): persist, our statement, and a statement
   * request to every peer. A failure steps down, as the real loop's catch on commitPending does.
   */
  private async startCommit(): Promise<void> {
    if (this.gather) return; // a sweep's commit is already in flight (Agent.committing)
    try {
      if (!(await this.persist())) throw new AgentError('Halted', 'NVRAM persist failed');
      const own = this.hsm.statement();
      if (own.type !== 'Ok') throw new AgentError('Halted', 'no statement');
      const peers = this.host.peers(this.member);
      const round = ++this.round;
      this.gather = { round, own: own.statement, got: [], answered: new Set(), needed: Math.floor((peers.length + 1) / 2), peers: peers.length, deadline: this.host.now() + this.opts.statementTimeoutMs };
      for (const p of peers) this.host.send(this.member, p, { kind: 'statement-request', round, index: own.statement.index });
    } catch (e) {
      rethrowCrash(e);
      this.deliver(this.hsm.stepDown());
    }
  }

  /** A peer's answer (or anything the network passes off as one). */
  onStatement(from: number, round: number, statement: Statement | undefined): void {
    const g = this.gather;
    if (!g || g.round !== round || g.answered.has(from)) return;
    g.answered.add(from);
    if (statement) g.got.push(statement);
  }

  /** commitPending, second half: the HSM releases what the statements certify. */
  private async finishCommit(): Promise<boolean> {
    const g = this.gather!;
    this.gather = undefined;
    try {
      const statements = [g.own, ...g.got];
      const c = this.hsm.commit(statements);
      this.host.note(`commit:${c.type}${c.type === 'Committed' ? `@${c.index}` : ''}/q${this.queue.length}w${this.waiting.size}`);
      if (c.type === 'InvalidCertificate') {
        this.commitFailingSince ??= this.host.now();
        return false;
      }
      this.deliver(c.released);
      if (c.type !== 'Committed') return false;
      this.commitFailingSince = undefined;
      await this.storeCertificate(c.index, statements);
      if (c.index - this.lastCompacted >= Math.max(1, Math.floor(this.opts.graceEntries / 4)) && c.index > this.opts.graceEntries) {
        this.lastCompacted = c.index;
        await this.storage.compact(c.index - this.opts.graceEntries);
      }
      return true;
    } catch (e) {
      rethrowCrash(e);
      this.deliver(this.hsm.stepDown());
      return false;
    }
  }

  private async storeCertificate(index: number, statements: Statement[]): Promise<void> {
    const at = statements.find((x) => x.index === index)?.hash ?? (await this.storage.readEntries(index, 1)).map((e) => entryHash(e.entry))[0];
    if (!at) return;
    await this.storage.putCertificate({ index, hash: at, statements: statements.filter((x) => x.index >= index).map(encodeStatement) });
  }

  /** Agent.statementFor: capture what storage holds, persist, and answer with our statement. */
  async statementFor(index: number): Promise<Statement | undefined> {
    if (!this.active) return undefined;
    try {
      const st = this.hsm.status();
      if (!this.hsm.isLeader() && (st.captured?.index ?? -1) < index) await catchUp(this.hsm, this.storage, this.events);
      await this.persist();
      const s = this.hsm.statement();
      return s.type === 'Ok' ? s.statement : undefined;
    } catch (e) {
      rethrowCrash(e);
      return undefined;
    }
  }

  deliver(released: ReleasedResponse[]): void {
    for (const r of released) {
      const w = this.waiting.get(r.handle);
      if (!w) continue;
      this.waiting.delete(r.handle);
      if (r.response.type === 'Sealed') this.reply(w, { type: 'Sealed', body: r.response.body });
      else this.reply(w, { type: 'Error', code: 'OutcomeUnknown', message: 'the outcome is unknown: a guess may have been spent' });
    }
  }
}
