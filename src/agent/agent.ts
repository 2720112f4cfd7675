/**
 * The agent drives one HSM (DESIGN section 3): it does the HSM's network and storage I/O and
 * nothing that safety depends on. Requests are gathered into batches while the previous batch's
 * entry is being written, so one durable append and one NVRAM write serve many requests.
 */
import type { Logger } from 'pino';
import { HsmCore, type ReleasedResponse } from '../hsm/core.js';
import type { Platform } from '../hsm/platform.js';
import type { FleetConfig } from '../hsm/keys.js';
import type { FleetPublicKeys } from '../protocol/fleet.js';
import type { RequestEnvelope } from '../protocol/channel.js';
import { encodeStatement } from '../protocol/log.js';
import { ProtocolError, type ErrorCode } from '../protocol/errors.js';
import { toHex } from '../crypto/bytes.js';
import type { Storage } from '../storage/types.js';
import { collectPath } from './proof.js';
import { opaqueReady } from '../crypto/opaque.js';

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
  /** Entries kept below the latest certificate before nodes and entries are compacted. */
  compactGraceEntries?: number;
  /** Requests in flight before new ones are refused as unavailable (back-pressure). */
  maxQueue?: number;
}

export class AgentError extends ProtocolError {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Agent {
  private queue: Waiting[] = [];
  private running = false;
  private top: Uint8Array | null = null;
  private closed = false;
  private readonly grace: number;
  private readonly maxQueue: number;
  private lastCompacted = 0;
  stats = { batches: 0, requests: 0, appendsMs: 0 };

  private constructor(
    readonly hsm: HsmCore,
    private readonly storage: Storage,
    private readonly log: Logger,
    opts: AgentOptions,
  ) {
    this.grace = opts.compactGraceEntries ?? 1000;
    this.maxQueue = opts.maxQueue ?? 10_000;
  }

  static async start(opts: AgentOptions): Promise<Agent> {
    await opaqueReady; // the OPAQUE library is WebAssembly: loaded before the HSM runs
    const hsm = HsmCore.boot(opts.platform);
    const agent = new Agent(hsm, opts.storage, opts.log, opts);
    await agent.init(opts);
    return agent;
  }

  private async init(opts: AgentOptions): Promise<void> {
    if (!this.hsm.publicKeys()) {
      if (!opts.createFleet) throw new AgentError('Unavailable', 'this HSM holds no fleet keys');
      if (await this.storage.latestEntry()) throw new AgentError('Halted', 'storage already holds a log, but this HSM has no fleet: refusing to start a second log on it');
      const created = this.hsm.createFleet(opts.createFleet);
      if (created.type !== 'Created') throw new AgentError('Internal', 'fleet creation failed');
      const appended = await this.storage.appendEntry({ index: 0, entry: created.genesis, top: null }, [], []);
      if (appended.type !== 'Appended') throw new AgentError('Halted', 'storage already holds a genesis entry');
      this.log.info({ fleetId: toHex(created.fleetId) }, 'created a new fleet: keys generated inside the HSM');
    }
    await this.catchUp();
    const persisted = await this.persist();
    if (!persisted) throw new AgentError('Halted', 'could not persist the position');
    const became = this.hsm.becomeLeader(this.top);
    if (became.type !== 'Ok') throw new AgentError('Halted', `could not lead: ${became.type}`);
    this.log.info({ index: became.position.index }, 'leading');
  }

  /**
   * Shows the HSM the entries in storage from its NVRAM position on. Storage that lacks the
   * entry NVRAM names was rolled back or replaced: the HSM refuses it (I5), and so do we.
   */
  private async catchUp(): Promise<void> {
    const st = this.hsm.status();
    if (st.halted) throw new AgentError('Halted', `HSM halted: ${st.halted}`);
    let from = st.captured ? st.captured.index + 1 : st.awaiting!.index;
    for (;;) {
      const batch = await this.storage.readEntries(from, 256);
      if (batch.length === 0) break;
      const r = this.hsm.captureNext(batch.map((e) => e.entry));
      if (r.type !== 'Ok') {
        throw new AgentError('Halted', `the HSM refuses storage's log at index ${batch[0]!.index} (${r.type}): storage does not hold the history this HSM persisted; it may have been rolled back or replaced`);
      }
      this.top = batch[batch.length - 1]!.top;
      from = batch[batch.length - 1]!.index + 1;
    }
    const after = this.hsm.status();
    if (!after.captured) {
      const latest = await this.storage.latestEntry();
      throw new AgentError('Halted', `storage is behind this HSM: its NVRAM names log index ${after.awaiting!.index}, storage ends at ${latest?.index ?? 'nothing'}. Refusing stale or rolled-back storage.`);
    }
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

  publicKeys(): FleetPublicKeys {
    return this.hsm.publicKeys()!;
  }

  fleetConfig(): FleetConfig {
    return this.hsm.fleetConfig()!;
  }

  /** Queues a request; resolves with the sealed response once its entry is committed. */
  submit(env: RequestEnvelope): Promise<AgentReply> {
    if (this.closed) return Promise.resolve({ type: 'Error', code: 'Unavailable', message: 'agent is shutting down' });
    if (this.queue.length >= this.maxQueue) return Promise.resolve({ type: 'Error', code: 'Unavailable', message: 'agent overloaded' });
    return new Promise((resolve) => {
      this.queue.push({ env, resolve, retries: 0 });
      if (!this.running) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        await this.runBatch();
      }
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'batch failed; failing queued requests');
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

  private async runBatch(): Promise<void> {
    const items = this.queue.splice(0, 512);
    const byHandle = new Map<number, Waiting>();
    const retry: Waiting[] = [];
    for (const w of items) {
      const o = this.hsm.openRequest(w.env);
      if (o.type === 'Refused') {
        w.resolve({ type: 'Error', code: o.code, message: o.message });
        continue;
      }
      const nodes = await collectPath(this.storage, this.top, o.recordId);
      const a = this.hsm.applyRequest(o.handle, nodes);
      switch (a.type) {
        case 'Applied':
          byHandle.set(o.handle, w);
          break;
        case 'StaleProof':
        case 'Busy':
          // Retried after this batch is durable; storage then holds the path the HSM needs.
          if (w.retries++ < 3) retry.push(w);
          else w.resolve({ type: 'Error', code: 'Unavailable', message: 'could not apply the request' });
          break;
        case 'Halted':
          w.resolve({ type: 'Error', code: 'Halted', message: 'the HSM has halted' });
          break;
        default:
          w.resolve({ type: 'Error', code: 'Unavailable', message: `HSM: ${a.type}` });
      }
    }
    this.queue.unshift(...retry);
    const proposed = this.hsm.closeBatch();
    if (proposed.type !== 'Proposed') return;
    const t0 = performance.now();
    const appended = await this.storage.appendEntry({ index: proposed.index, entry: proposed.entry, top: proposed.top }, proposed.added, proposed.removed);
    this.stats.appendsMs += performance.now() - t0;
    if (appended.type !== 'Appended') {
      // Another writer took the index: our entry is not the one storage holds. Step down.
      this.deliver(this.hsm.stepDown(), byHandle);
      throw new AgentError('NotLeader', 'log index taken by another writer');
    }
    this.top = proposed.top;
    // Capture only what storage returns after the durable append (DESIGN section 5).
    const readBack = await this.storage.readEntries(proposed.index, 1);
    const cap = this.hsm.captureNext(readBack.map((e) => e.entry));
    if (cap.type !== 'Ok') {
      this.deliver(this.hsm.stepDown(), byHandle);
      throw new AgentError('Halted', `capture of our own entry failed: ${cap.type}`);
    }
    if (cap.steppedDown) this.deliver(cap.steppedDown, byHandle);
    if (!(await this.persist())) throw new AgentError('Halted', 'NVRAM persist failed');
    const st = this.hsm.statement();
    if (st.type !== 'Ok') throw new AgentError('Halted', 'no statement');
    // One member: its own statement is the majority. Fleets gather peers' statements here.
    const cert = [st.statement];
    const c = this.hsm.commit(cert);
    if (c.type === 'InvalidCertificate') throw new AgentError('Internal', c.reason);
    this.deliver(c.released, byHandle);
    await this.storage.putCertificate({ index: st.statement.index, hash: st.statement.hash, statements: cert.map(encodeStatement) });
    this.stats.batches++;
    this.stats.requests += byHandle.size;
    if (st.statement.index - this.lastCompacted >= Math.max(1, Math.floor(this.grace / 4)) && st.statement.index > this.grace) {
      this.lastCompacted = st.statement.index;
      await this.storage.compact(st.statement.index - this.grace);
    }
  }

  private deliver(released: ReleasedResponse[], byHandle: Map<number, Waiting>): void {
    for (const r of released) {
      const w = byHandle.get(r.handle);
      if (!w) continue;
      byHandle.delete(r.handle);
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
    while (this.running) await sleep(5);
    this.failAll('Unavailable', 'agent is shutting down');
  }
}
