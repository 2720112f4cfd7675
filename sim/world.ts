/**
 * The deterministic simulation (DESIGN section 5, "Simulator checks"; STYLE.md, "The simulator is
 * the main test"): the real HSM core of every member, each on a seeded platform, driven by
 * simulated agents over a simulated network, clock and storage, while an adversary chosen by the
 * seed crashes and restarts members (also between an NVRAM write and a statement), loses,
 * duplicates, delays, reorders and replays messages, partitions the network, moves the leader
 * lease, serves stale reads, rolls storage back, shows two histories to different members, and
 * drives HSMs directly with anything it has seen. Clients register, recover with right and wrong
 * passwords, flood KE1s, ask for status and delete, through whichever member leads.
 *
 * After every step the checker's invariants hold or the run stops with a violation. A run is a
 * function of (seed, steps): the same seed gives the same trace hash.
 */
import { createHash } from 'node:crypto';
import { toHex, utf8 } from '../src/crypto/bytes.js';
import { hmacSha256 } from '../src/crypto/server.js';
import { opaqueReady } from '../src/crypto/opaque.js';
import { collectPath } from '../src/agent/proof.js';
import { HsmCore, logIdOf } from '../src/hsm/core.js';
import { lookup, rootHash } from '../src/hsm/tree.js';
import { decodeHsmSecrets, deriveSubkeys, type FleetPolicy } from '../src/hsm/keys.js';
import type { Platform } from '../src/hsm/platform.js';
import { decodeEntry, decodeStatement, entryHash, type Statement } from '../src/protocol/log.js';
import { readNvram } from '../src/hsm/nvram.js';
import type { StoredEntry } from '../src/storage/types.js';
import { SimAgent, type AgentOptions, type AgentReply } from './agent.js';
import { Checker, type Violation } from './checker.js';
import { Clients, Sealer, type Flow, type Reply, type SealedCall, type User } from './client.js';
import { Crash, SimHsm, type HsmHooks } from './hsm.js';
import { FRONT_END, Network, type Message } from './network.js';
import { SimPlatform } from './platform.js';
import { Rng, seedGlobalRandom } from './rng.js';
import { SimStore, type ReadTamper } from './storage.js';

/** Makes the core a member runs: the real one, or a deliberately broken one (mutants.ts). */
export type CoreFactory = (platform: Platform) => HsmCore;

export interface SimOptions {
  seed: number;
  steps: number;
  core?: CoreFactory;
  /** Called with a line per step (for --verbose). */
  trace?: (line: string) => void;
}

export interface SimResult {
  seed: number;
  members: number;
  steps: number;
  profile: string;
  violations: Violation[];
  traceHash: string;
  stats: Record<string, number>;
}

/** Steps within which a healed fleet on honest storage must answer a client (S5). */
export const LIVENESS_STEPS = 250;

type StorageProfile = 'honest' | 'stale' | 'hostile';

interface Profile {
  storage: StorageProfile;
  hostileAgent: boolean;
  crashes: boolean;
  /** Chance of a crash after any one HSM call during a storm. */
  midCrash: number;
}

interface Member {
  index: number;
  platform: SimPlatform;
  hsm?: SimHsm;
  agent?: SimAgent;
  up: boolean;
  boots: number;
  /** The supervisor's back-off: no restart before this time. */
  restartAt: number;
}

const STEP_MS_MAX = 8;

export async function runSeed(opts: SimOptions): Promise<SimResult> {
  await opaqueReady;
  const rng = new Rng(opts.seed);
  // The OPAQUE library draws from crypto.getRandomValues: seeded for the whole run.
  const restore = seedGlobalRandom(rng.fork(1));
  try {
    const world = new World(opts, rng);
    await world.setUp();
    return await world.run();
  } finally {
    restore();
  }
}

class World implements HsmHooks {
  now = 1_700_000_000_000;
  step = 0;
  readonly n: number;
  readonly members: Member[] = [];
  readonly store: SimStore;
  readonly net: Network;
  checker!: Checker;
  private sealer!: Sealer;
  private clients!: Clients;
  private readonly profile: Profile;
  private readonly policy: Partial<FleetPolicy>;
  private readonly agentOptions: AgentOptions;
  private readonly makeCore: CoreFactory;
  private fleetId!: Uint8Array;
  private phase: { kind: 'storm' | 'calm'; until: number } = { kind: 'storm', until: 0 };
  private s5: { since: number; deadline: number; tip: number; told: number; probe?: Flow; satisfiedAt?: number } | undefined;
  private readonly hash = createHash('sha256');
  private line: string[] = [];
  /** What the adversary has seen: entries (with their tops) and statements. */
  private readonly seenEntries: StoredEntry[] = [];
  private readonly seenStatements: Statement[] = [];
  private readonly flowsById = new Map<number, Flow>();
  /** Members whose HSM a hostile agent drove during this storm. */
  private readonly tainted = new Set<number>();
  /** The simulated users' record ids (hex -> bytes). */
  private readonly recordIds = new Map<string, Uint8Array>();
  readonly stats: Record<string, number> = {};

  constructor(
    private readonly opts: SimOptions,
    private readonly rng: Rng,
  ) {
    this.n = rng.chance(0.5) ? 3 : 5;
    const storage = rng.weighted<StorageProfile>({ honest: 4, stale: 2, hostile: 4 });
    this.profile = { storage, hostileAgent: rng.chance(0.7), crashes: rng.chance(0.85), midCrash: rng.pick([0, 0.005, 0.02]) };
    // Small windows and a fast epoch schedule: overlay pruning and ratchets happen within a run.
    this.policy = { persistIntervalMs: rng.int(0, 12), maxUncommitted: rng.int(2, 8), overlayWindow: rng.int(1, 16), epochIntervalMs: rng.pick([500, 2000, 8000, 30 * 24 * 3600 * 1000]) };
    this.agentOptions = { leaseMs: rng.pick([150, 300, 600]), graceEntries: rng.int(1, 8), maxQueue: 64, statementTimeoutMs: 500 };
    this.makeCore = opts.core ?? ((p) => HsmCore.boot(p));
    this.store = new SimStore(this.n);
    this.net = new Network(this.n, rng.fork(2), () => this.now);
  }

  private count(k: string): void {
    this.stats[k] = (this.stats[k] ?? 0) + 1;
  }

  private note(s: string): void {
    this.line.push(s);
  }

  // ---- HsmHooks ------------------------------------------------------------------------------

  crashPoint(member: number, op: string): void {
    if (this.phase.kind !== 'storm' || !this.profile.crashes || this.profile.midCrash === 0) return;
    // The point DESIGN section 5 names: after the NVRAM write, before any statement leaves.
    const p = op === 'persist' ? this.profile.midCrash * 4 : this.profile.midCrash;
    if (this.rng.chance(p)) {
      this.note(`crash-after-${op}`);
      throw new Crash(member);
    }
  }

  callOf(envKey: string): SealedCall | undefined {
    return this.sealer.calls.get(envKey);
  }

  proposed(entry: Uint8Array, index: number, top: Uint8Array | null): void {
    this.seenEntries.push({ index, entry, top });
    if (this.seenEntries.length > 240) this.seenEntries.splice(1, 60);
  }

  // ---- set-up: the key ceremony --------------------------------------------------------------

  async setUp(): Promise<void> {
    const cores: HsmCore[] = [];
    for (let i = 0; i < this.n; i++) {
      const platform = new SimPlatform(this.rng.fork(100 + i), () => this.now, this.rng.int(-50, 50));
      this.members.push({ index: i, platform, up: false, boots: 0, restartAt: 0 });
      cores.push(this.makeCore(platform));
    }
    const created = cores[0]!.createFleet({ policy: this.policy, members: cores.map((c) => c.memberId) });
    if (created.type !== 'Created') throw new Error('ceremony: createFleet failed');
    this.fleetId = created.fleetId;
    for (let i = 1; i < this.n; i++) {
      const w = cores[0]!.exportFleet(cores[i]!.identity());
      if (w.type !== 'Wrapped') throw new Error(`ceremony: exportFleet ${w.type}`);
      const j = cores[i]!.joinFleet(w.blob, created.genesis);
      if (j.type !== 'Joined') throw new Error(`ceremony: joinFleet ${j.type}`);
    }
    this.store.main.append({ index: 0, entry: created.genesis, top: null }, [], []);
    this.seenEntries.push({ index: 0, entry: created.genesis, top: null });
    // The harness (never the adversary) reads the fleet's keys to open what the HSMs sealed.
    const secrets = decodeHsmSecrets(this.members[0]!.platform.secrets.read()!).fleet!;
    const subkeys = deriveSubkeys(secrets.secrets.mac);
    const recordIdOf = (userId: string): string => toHex(hmacSha256(subkeys.recordId, utf8(userId)));
    const userCount = this.rng.int(2, 5);
    for (let i = 0; i < userCount; i++) {
      const id = hmacSha256(subkeys.recordId, utf8(Clients.userId(i)));
      this.recordIds.set(toHex(id), id);
    }
    this.checker = new Checker({
      members: this.n,
      fleetId: this.fleetId,
      epochKey: secrets.epochKey,
      loginStateKey: subkeys.loginState,
      records: new Set(this.recordIds.keys()),
      recordIdOf,
      reRegistrationLimit: secrets.config.policy.reRegistrationLimit,
    });
    this.checker.genesis(created.genesis);
    const fleet = { fleetId: this.fleetId, hpke: created.publicKeys.hpke };
    this.sealer = new Sealer(fleet, this.rng.fork(3));
    this.clients = new Clients(
      fleet,
      this.sealer,
      this.rng.fork(4),
      { now: () => this.now, send: (call, flow) => this.sendFromClient(call, flow) },
      {
        told: (user, call, reply) => this.told(user, call, reply),
        violation: (check, message) => this.checker.fail(check, message),
      },
      userCount,
    );
    for (let i = 0; i < this.n; i++) await this.boot(this.members[i]!, cores[i]!);
  }

  /** Starts a member on a core booted from its platform: NVRAM and secrets survive, RAM does not. */
  private async boot(m: Member, core?: HsmCore): Promise<void> {
    m.boots++;
    const hsm = new SimHsm(m.index, core ?? this.makeCore(m.platform), m.platform, this.fleetId, this);
    const agent = new SimAgent(m.index, hsm, this.store.view(m.index), { now: () => this.now, sleep: (ms) => this.sleep(ms), send: (f, t, msg) => this.net.send(f, t, msg), peers: (i) => this.members.filter((x) => x.index !== i).map((x) => x.index), note: (s) => this.note(s) }, this.agentOptions);
    m.hsm = hsm;
    m.agent = agent;
    m.up = true;
    try {
      await agent.activate();
      this.note(`boot${m.index}:ok`);
    } catch (e) {
      // Agent.start failed: the process exits; the supervisor will try again later.
      if (!(e instanceof Crash)) this.note(`boot${m.index}:${(e as Error).message.slice(0, 60)}`);
      this.down(m);
      m.restartAt = this.now + 300;
    }
  }

  private down(m: Member): void {
    m.up = false;
    m.hsm = undefined;
    m.agent = undefined;
    this.net.dropTo(m.index);
  }

  private sleep(ms: number): void {
    this.now += ms;
  }

  // ---- the run -------------------------------------------------------------------------------

  async run(): Promise<SimResult> {
    this.hash.update(`seed ${this.opts.seed} members ${this.n} ${JSON.stringify(this.profile)} ${JSON.stringify(this.policy)} ${JSON.stringify(this.agentOptions)}\n`);
    this.nextPhase();
    for (this.step = 1; this.step <= this.opts.steps; this.step++) {
      this.checker.step = this.step;
      this.line = [];
      this.now += this.rng.int(1, STEP_MS_MAX);
      if (this.step >= this.phase.until) this.nextPhase();
      if (this.step % 3 === 0) this.store.snapshotAll();
      try {
        await this.event();
      } catch (e) {
        if (!(e instanceof Crash)) throw e;
        this.down(this.members[e.member]!);
      }
      this.clients.expire();
      this.checkLiveness();
      const state = this.members.map((m) => {
        if (!m.up || !m.hsm) return 'down';
        const st = m.hsm.status();
        if (st.halted) this.count('haltedMemberSteps');
        return `${st.captured?.index ?? '-'}/${st.persisted?.index ?? '-'}${st.leader ? 'L' : ''}${st.halted ? 'H' : ''}`;
      });
      const text = `${this.step} t=${this.now} ${this.line.join(' ')} | ${state.join(' ')} c=${this.checker.certTip}`;
      this.hash.update(text + '\n');
      this.opts.trace?.(text);
      if (this.checker.violations.length > 0) break;
    }
    if (this.checker.violations.length === 0) {
      this.checkDurability();
      this.hash.update(`end ${this.checker.violations.length}\n`);
    }
    return {
      seed: this.opts.seed,
      members: this.n,
      steps: Math.min(this.step, this.opts.steps),
      profile: `${this.profile.storage}${this.profile.hostileAgent ? '+hostile-agent' : ''}${this.profile.crashes ? '+crashes' : ''}`,
      violations: this.checker.violations,
      traceHash: this.hash.digest('hex'),
      stats: { ...this.stats, ...this.checker.stats, ...Object.fromEntries(Object.entries(this.checker.outcomes).map(([k, v]) => [`released:${k}`, v])), certTip: this.checker.certTip },
    };
  }

  private nextPhase(): void {
    if (this.phase.kind === 'calm') this.checkDurability();
    if (this.phase.kind === 'calm' || this.step === 0) {
      this.phase = { kind: 'storm', until: this.step + this.rng.int(60, 200) };
      this.s5 = undefined;
      this.note('storm');
      return;
    }
    // Calm: the network heals, storage stops lying, nobody crashes or replays; S5 applies when
    // storage never lost a write and a majority of members can follow it.
    this.phase = { kind: 'calm', until: this.step + LIVENESS_STEPS + this.rng.int(10, 50) };
    this.net.heal();
    this.store.heal();
    this.note('calm');
    // The hosts whose agents were hostile are cleaned up: their processes restart (the HSM keeps
    // only its NVRAM and secrets). A member whose NVRAM a hostile agent led off the log cannot
    // come back, by design; one whose RAM alone was misled comes back whole.
    for (const i of this.tainted) {
      const m = this.members[i]!;
      if (m.up) {
        this.down(m);
        m.restartAt = this.now;
      }
    }
    this.tainted.clear();
    const able = this.members.filter((m) => this.able(m)).length;
    // S5 needs honest storage: no lost write, and a log whose entries link (a hostile agent may
    // have appended an entry on a chain of its own, which takes that index from everyone).
    if (this.store.lostWrites) this.count('s5Off:lostWrites');
    else if (!this.logLinks()) this.count('s5Off:brokenLog');
    else if (able < this.checker.majority) this.count('s5Off:minorityAble');
    else {
      this.s5 = this.armLiveness();
      this.count('s5Windows');
    }
  }

  /**
   * A member can follow the honest log: its persisted position is an entry storage holds, or lies
   * below what storage compacted (it will jump). A member a hostile agent led off the log (an entry
   * storage never held) is lost to the fleet, as DESIGN intends: it can never state another chain.
   */
  private able(m: Member): boolean {
    const nv = m.hsm?.nvram() ?? (m.up ? undefined : this.nvramOf(m));
    const pos = m.hsm?.status().captured ?? nv;
    if (!pos || !nv) return false;
    if (m.hsm?.status().halted) return false;
    const onLog = (p: { index: number; hash: Uint8Array }): boolean => {
      const first = this.store.main.state.order[0] ?? 0;
      if (p.index < first) return true;
      const e = this.store.main.state.entries.get(p.index);
      return e !== undefined && toHex(entryHash(e.entry)) === toHex(p.hash);
    };
    return onLog(pos) && onLog(nv);
  }

  /**
   * I4 with honest storage: storage's newest entry still holds every record, through its tree,
   * as the certified log says (compaction and node removal never take a live node).
   */
  private checkDurability(): void {
    if (this.store.lostWrites || !this.logLinks()) return;
    const st = this.store.main.state;
    const last = st.entries.get(st.order[st.order.length - 1] ?? -1);
    if (!last) return;
    this.count('durabilityChecks');
    const e = decodeEntry(last.entry);
    const ctx = { fleetId: this.fleetId, logId: logIdOf(this.fleetId) };
    if (toHex(rootHash(ctx, last.top)) !== toHex(e.root)) {
      this.checker.fail('I4', `storage's newest entry ${last.index} carries a top node that is not its tree's`);
      return;
    }
    const nodes = { get: (h: Uint8Array): Uint8Array | undefined => st.nodes.get(toHex(h))?.node };
    for (const [rec, id] of this.recordIds) {
      const r = lookup(ctx, { top: last.top, hash: e.root }, id, nodes);
      if (r.type === 'Found' || r.type === 'Absent') this.checker.storedRecord(last.index, toHex(entryHash(last.entry)), rec, r.type === 'Found' ? r.value : undefined);
      else this.checker.fail('I4', `storage lost part of the live tree: record ${rec.slice(0, 8)} at entry ${last.index} (${r.type})`);
    }
  }

  /**
   * The stored log is well formed: contiguous above what compaction removed, each entry linked to
   * the one before. A hostile agent can break that (an entry at a skipped index, or on a chain of
   * its own), and nothing then lets the fleet past it: liveness is not owed against that.
   */
  private logLinks(): boolean {
    const st = this.store.main.state;
    for (let k = 1; k < st.order.length; k++) {
      const i = st.order[k]!;
      if (st.order[k - 1] !== i - 1) return false;
      const prev = st.entries.get(i - 1)!.entry;
      if (toHex(decodeEntry(st.entries.get(i)!.entry).prev) !== toHex(entryHash(prev))) return false;
    }
    return true;
  }

  private nvramOf(m: Member): { index: number; hash: Uint8Array } | undefined {
    return readNvram(m.platform.nvram, this.fleetId)?.position;
  }

  /**
   * S5: with honest storage, the network healed and a majority able, commits resume: a new entry
   * is certified and some client is answered within LIVENESS_STEPS. A probe (a status request)
   * makes sure there is work to commit.
   */
  private checkLiveness(): void {
    const s = this.s5;
    if (!s || this.phase.kind !== 'calm') return;
    if (s.satisfiedAt !== undefined) {
      // And keep resuming: look again a while later in the same window.
      if (this.step - s.satisfiedAt > 40) this.s5 = this.armLiveness();
      return;
    }
    if (!s.probe || s.probe.done) {
      s.probe = this.clients.start('probe');
      this.flowsById.set(s.probe.id, s.probe);
    }
    if (this.checker.certTip > s.tip && this.checker.stats.told > s.told) {
      s.satisfiedAt = this.step;
      this.count('s5Resumed');
      this.stats.s5MaxSteps = Math.max(this.stats.s5MaxSteps ?? 0, this.step - s.since);
      return;
    }
    if (this.step >= s.deadline && this.phase.until > this.step) {
      const states = this.members.map((m) => (m.up ? `${m.index}:${m.agent?.lastError || 'ok'}` : `${m.index}:down`)).join('; ');
      this.checker.fail('S5', `commits did not resume within ${LIVENESS_STEPS} steps of the network healing, on honest storage with a majority able (certified ${this.checker.certTip}; ${states})`);
    }
  }

  private armLiveness(): NonNullable<World['s5']> {
    return { since: this.step, deadline: this.step + LIVENESS_STEPS, tip: this.checker.certTip, told: this.checker.stats.told };
  }

  // ---- events --------------------------------------------------------------------------------

  private async event(): Promise<void> {
    const storm = this.phase.kind === 'storm';
    const up = this.members.filter((m) => m.up && m.agent);
    const downs = this.members.filter((m) => !m.up && m.restartAt <= this.now);
    const dueTicks = up.filter((m) => m.agent!.active && m.agent!.nextTickAt <= this.now);
    const runnable = up.filter((m) => m.agent!.runnable);
    const hostileStorage = this.profile.storage !== 'honest';
    // Timers fire on time unless the adversary is at work: in a calm phase an overdue lease tick
    // runs first (a storm may starve a host, which is how leases get lost).
    const overdue = dueTicks.filter((m) => this.now - m.agent!.nextTickAt > 20);
    if (!storm && overdue.length > 0 && this.rng.chance(0.8)) {
      const m = overdue.reduce((a, b) => (b.agent!.nextTickAt < a.agent!.nextTickAt ? b : a));
      this.count('event:tick');
      this.note(`tick m${m.index}`);
      return m.agent!.tick();
    }
    const kind = this.rng.weighted({
      deliver: this.net.due().length > 0 ? 30 : 0,
      tick: dueTicks.length > 0 ? 14 : 0,
      run: runnable.length > 0 ? 20 : 0,
      client: this.clients.active.length < 6 ? 6 : 1,
      restart: downs.length > 0 ? (storm ? 2 : 25) : 0,
      crash: storm && this.profile.crashes && up.length > 0 ? 1.5 : 0,
      network: storm ? 1.5 : 0,
      storage: storm && hostileStorage ? (this.profile.storage === 'hostile' ? 4 : 1.5) : 0,
      hostile: storm && this.profile.hostileAgent && up.length > 0 ? 8 : 0,
      lease: storm ? 1 : 0,
      replay: storm ? 2 : 0,
      time: storm ? 0.7 : 0,
      idle: 2,
    });
    this.count(`event:${kind}`);
    this.note(kind);
    switch (kind) {
      case 'deliver':
        return this.deliver();
      case 'tick': {
        const m = this.rng.pick(dueTicks);
        this.note(`m${m.index}`);
        return m.agent!.tick();
      }
      case 'run': {
        const m = this.rng.pick(runnable);
        this.note(`m${m.index}`);
        return m.agent!.runIteration();
      }
      case 'client':
        return this.startFlow();
      case 'restart': {
        const m = this.rng.pick(downs);
        this.note(`m${m.index}`);
        return this.boot(m);
      }
      case 'crash': {
        const m = this.rng.pick(up);
        this.note(`m${m.index}`);
        return this.down(m);
      }
      case 'network':
        return this.networkFault();
      case 'storage':
        return this.storageFault();
      case 'hostile':
        return this.hostile(this.rng.pick(up));
      case 'lease':
        return this.leaseChurn();
      case 'replay': {
        const env = this.net.replay(this.rng.chance(0.5) ? this.rng.int(0, this.n - 1) : undefined);
        if (env) this.note(`${env.msg.kind}->${env.to}`);
        return;
      }
      case 'time':
        this.now += this.rng.int(100, 1500);
        return;
      case 'idle':
        return;
    }
  }

  private startFlow(): void {
    const user = this.rng.pick(this.clients.users);
    const kind = user.registered ? this.rng.weighted({ register: 0.5, recover: 4, wrong: 3, flood: 1.5, status: 1.5, delete: 0.7 }) : this.rng.weighted({ register: 6, recover: 1, wrong: 0.5, flood: 0.3, status: 0.5 });
    const flow = this.clients.start(kind, user);
    this.flowsById.set(flow.id, flow);
    if (this.flowsById.size > 256) {
      for (const [id, f] of this.flowsById) if (f.done) this.flowsById.delete(id);
    }
    this.note(`${kind}:${flow.user.userId.slice(9)}`);
  }

  /** The front end: a client request goes to whichever member leads, or waits for one. */
  private sendFromClient(call: SealedCall, flow: Flow): void {
    this.net.send(FRONT_END, FRONT_END, { kind: 'request', callKey: call.key, flow: flow.id, env: call.env, hops: 0 });
  }

  private route(msg: Extract<Message, { kind: 'request' }>): void {
    const leaders = this.members.filter((m) => m.up && m.agent?.active && m.hsm?.isLeader());
    if (leaders.length > 0) {
      this.net.send(FRONT_END, this.rng.pick(leaders).index, msg);
    } else if (msg.hops < 6) {
      this.net.send(FRONT_END, FRONT_END, { ...msg, hops: msg.hops + 1 }, 60);
    } else {
      this.reply(msg.flow, msg.callKey, { type: 'Error', code: 'Unavailable', message: 'no leader' });
    }
  }

  private reply(flowId: number, callKey: string, r: AgentReply): void {
    const flow = this.flowsById.get(flowId);
    if (!flow) return;
    let reply: Reply;
    if (r.type === 'Error') reply = { kind: 'error', code: r.code };
    else {
      const call = this.sealer.calls.get(callKey);
      try {
        reply = { kind: 'response', res: call!.open(r.body), body: r.body };
      } catch {
        reply = { kind: 'error', code: 'Malformed' };
      }
    }
    this.note(`${flow.kind}#${flow.id}:${reply.kind === 'error' ? reply.code : `${reply.res.type}:${reply.res.outcome === 'Ok' ? 'Ok' : reply.res.code}`}`);
    this.clients.onReply(flow, callKey, reply);
  }

  private told(user: User, _call: SealedCall, reply: Reply): void {
    if (reply.kind === 'response') this.checker.told(user.userId, reply.body);
  }

  private async deliver(): Promise<void> {
    const env = this.net.take();
    if (!env) return;
    const { msg } = env;
    this.note(`${msg.kind}:${env.from}->${env.to}`);
    if (env.to === FRONT_END) {
      if (msg.kind === 'request') return this.route(msg);
      if (msg.kind === 'reply') return this.reply(msg.flow, msg.callKey, msg.reply);
      return;
    }
    const m = this.members[env.to]!;
    if (!m.up || !m.agent) return;
    const agent = m.agent;
    switch (msg.kind) {
      case 'request':
        if (!agent.active) this.net.send(m.index, FRONT_END, { kind: 'reply', callKey: msg.callKey, flow: msg.flow, reply: { type: 'Error', code: 'Unavailable', message: 'starting' } });
        else agent.submit(msg.callKey, msg.flow, msg.env);
        return;
      case 'statement-request': {
        const s = await agent.statementFor(msg.index);
        if (s) this.remember(s);
        this.net.send(m.index, env.from, { kind: 'statement', round: msg.round, statement: s });
        return;
      }
      case 'statement':
        if (msg.statement) this.remember(msg.statement);
        agent.onStatement(env.from, msg.round, msg.statement);
        return;
      case 'reply':
        return;
    }
  }

  private remember(s: Statement): void {
    this.seenStatements.push(s);
    if (this.seenStatements.length > 120) this.seenStatements.splice(0, 40);
  }

  // ---- faults --------------------------------------------------------------------------------

  private networkFault(): void {
    const what = this.rng.weighted({ partition: 2, lossy: 2, heal: 2 });
    this.note(what);
    if (what === 'partition') this.net.partition(this.members.map(() => this.rng.int(0, 1)));
    else if (what === 'lossy') this.net.faults = { drop: this.rng.pick([0, 0.05, 0.2, 0.4]), duplicate: this.rng.pick([0, 0.1, 0.3]), maxDelayMs: this.rng.pick([5, 50, 200]) };
    else this.net.heal();
  }

  private storageFault(): void {
    const hostile = this.profile.storage === 'hostile';
    const what = this.rng.weighted({ stale: 3, heal: 2, rollback: hostile ? 0.6 : 0, fork: hostile ? 1.5 : 0, tamper: hostile ? 1 : 0, forkLeader: hostile ? 1 : 0 });
    const m = this.rng.int(0, this.n - 1);
    this.note(`${what}:m${m}`);
    switch (what) {
      case 'stale':
        this.store.staleRead(m, this.rng);
        return;
      case 'heal':
        this.store.views[m] = { branch: this.store.main };
        this.store.tamper[m] = undefined;
        return;
      case 'rollback':
        if (this.store.rollback(this.rng)) this.count('rollbacks');
        return;
      case 'fork': {
        const who = this.rng.sample(this.members.map((x) => x.index), this.rng.int(1, this.n - 1));
        this.store.fork(who, this.rng);
        this.count('forks');
        this.note(`fork:${who.join(',')}`);
        return;
      }
      case 'forkLeader': {
        // A second leader on a branch of its own: its lease there is whatever the branch says.
        const b = this.store.views[m]!.branch;
        b.lease = { holder: toHex(this.members[m]!.hsm?.core.memberId ?? new Uint8Array(16)), expiresAt: this.now + this.agentOptions.leaseMs };
        return;
      }
      case 'tamper':
        this.store.tamper[m] = this.tamperer();
        return;
    }
  }

  /** Reads that lie: reordered, duplicated, truncated, spliced with other entries, bit-flipped. */
  private tamperer(): ReadTamper {
    const rng = this.rng;
    return (rows) => {
      if (rows.length === 0 || !rng.chance(0.5)) return rows;
      const out = [...rows];
      switch (rng.int(0, 4)) {
        case 0:
          out.reverse();
          break;
        case 1:
          out.splice(rng.int(0, out.length - 1), 0, rng.pick(out));
          break;
        case 2:
          out.splice(rng.int(0, out.length - 1), 1);
          break;
        case 3:
          if (this.seenEntries.length > 0) out.splice(rng.int(0, out.length - 1), 1, rng.pick(this.seenEntries));
          break;
        case 4: {
          const i = rng.int(0, out.length - 1);
          const e = Uint8Array.from(out[i]!.entry);
          e[rng.int(0, e.length - 1)]! ^= 1 << rng.int(0, 7);
          out[i] = { ...out[i]!, entry: e };
          break;
        }
      }
      return out;
    };
  }

  private leaseChurn(): void {
    const b = this.store.views[this.rng.int(0, this.n - 1)]!.branch;
    const target = this.rng.pick(this.members);
    if (this.rng.chance(0.5) || !target.hsm) {
      b.lease = b.lease ? { ...b.lease, expiresAt: this.now - 1 } : null;
      this.note('lease:expire');
    } else {
      b.lease = { holder: toHex(target.hsm.core.memberId), expiresAt: this.now + this.agentOptions.leaseMs };
      this.note(`lease:m${target.index}`);
    }
  }

  // ---- a hostile agent: the member's HSM driven with anything seen, in any order ---------------

  private async hostile(m: Member): Promise<void> {
    this.tainted.add(m.index);
    const hsm = m.hsm!;
    const agent = m.agent!;
    const rng = this.rng;
    this.collectSeen();
    const what = rng.weighted({ captureNext: 3, captureNextHere: 3, captureAndState: 2, captureJump: 3, commit: 3, becomeLeader: 1.5, stepDown: 1, persist: 1, statement: 1, replayRequest: 3, applyStale: 2, closeBatch: 1.5 });
    this.note(`hostile:${what}:m${m.index}`);
    switch (what) {
      case 'captureNext': {
        const list = this.entryRun(rng.int(1, 4));
        const r = hsm.captureNext(list.map((e) => e.entry));
        this.note(r.type);
        if (r.type === 'Ok' && list.length > 0) agent.top = list[list.length - 1]!.top;
        return;
      }
      case 'captureNextHere': {
        // Any entry seen at the next index, from any branch or failed proposal, then its successors.
        const at = (hsm.status().captured ?? hsm.nvram())?.index ?? 0;
        const next = this.seenEntries.filter((e) => e.index === at + 1);
        if (next.length === 0) return;
        const list = [rng.pick(next)];
        for (let i = 0; i < 3; i++) {
          const more = this.seenEntries.filter((e) => e.index === list[list.length - 1]!.index + 1);
          if (more.length === 0) break;
          list.push(rng.pick(more));
        }
        this.note(hsm.captureNext(list.map((e) => e.entry)).type);
        return;
      }
      case 'captureAndState': {
        // Calls out of order: capture what storage holds, then a statement with no persist between.
        const from = (hsm.status().captured?.index ?? -1) + 1;
        const rows = await agent.storage.readEntries(from, rng.int(1, 3));
        this.note(hsm.captureNext(rows.map((e) => e.entry)).type);
        const s = hsm.statement();
        if (s.type === 'Ok') this.remember(s.statement);
        return;
      }
      case 'captureJump': {
        const target = rng.pick(this.seenEntries);
        const links = this.seenEntries.filter((e) => e.index > target.index && rng.chance(0.5)).sort((a, b) => a.index - b.index).slice(0, 6);
        const r = hsm.captureJump(target.entry, rng.sample(this.seenStatements, rng.int(1, this.n + 1)), links.map((e) => e.entry));
        this.note(r.type);
        if (r.type === 'Ok') agent.top = target.top;
        return;
      }
      case 'commit': {
        const cert = rng.sample(this.seenStatements, rng.int(1, this.n + 2));
        if (cert.length === 0) return;
        const r = hsm.commit(cert);
        this.note(r.type);
        if (r.type !== 'InvalidCertificate') agent.deliver(r.released);
        return;
      }
      case 'becomeLeader': {
        const top = rng.chance(0.5) ? agent.top : rng.pick(this.seenEntries).top;
        this.note(hsm.becomeLeader(top).type);
        return;
      }
      case 'stepDown':
        // A hostile agent drops the "outcome unknown" answers.
        hsm.stepDown();
        return;
      case 'persist':
        this.note(hsm.persist().type);
        return;
      case 'statement': {
        const s = hsm.statement();
        if (s.type === 'Ok') this.remember(s.statement);
        return;
      }
      case 'replayRequest': {
        // Any request any client ever sent, replayed into the leader's queue.
        const calls = [...this.sealer.calls.values()];
        if (calls.length === 0 || !hsm.isLeader()) return;
        const call = rng.pick(calls.slice(-60));
        this.note(call.request.type);
        agent.submit(call.key, -1, call.env);
        return;
      }
      case 'applyStale': {
        // open + apply with a proof from an older tree, then (maybe) close and write like a leader.
        const calls = [...this.sealer.calls.values()];
        if (calls.length === 0) return;
        const call = rng.pick(calls.slice(-60));
        const o = hsm.openRequest(call.env);
        if (o.type !== 'Opened') return;
        const top = rng.chance(0.5) ? agent.top : rng.pick(this.seenEntries).top;
        const nodes = await collectPath(agent.storage, top, o.recordId);
        this.note(`${call.request.type}:${hsm.applyRequest(o.handle, nodes).type}`);
        return;
      }
      case 'closeBatch': {
        const p = hsm.closeBatch();
        this.note(p.type);
        if (p.type !== 'Proposed') return;
        if (rng.chance(0.6)) {
          const a = await agent.storage.appendEntry({ index: p.index, entry: p.entry, top: p.top }, p.added, p.removed);
          this.note(a.type);
          if (a.type === 'Appended' && rng.chance(0.7)) {
            agent.top = p.top;
            this.note(hsm.captureNext((await agent.storage.readEntries(p.index, 1)).map((e) => e.entry)).type);
          }
        }
        return;
      }
    }
  }

  /** Entries from storage (every branch) and every proposal: what a hostile agent can feed. */
  private collectSeen(): void {
    const have = new Set(this.seenEntries.map((e) => toHex(e.entry.subarray(e.entry.length - 32))));
    for (const b of this.store.branches) {
      const o = b.state.order;
      for (const i of o.slice(-8)) {
        const e = b.state.entries.get(i)!;
        const k = toHex(e.entry.subarray(e.entry.length - 32));
        if (!have.has(k)) {
          have.add(k);
          this.seenEntries.push(e);
        }
      }
      for (const c of b.state.certs.values()) for (const s of c.statements) this.remember(decodeStatement(s));
    }
    if (this.seenEntries.length > 240) this.seenEntries.splice(1, 60);
  }

  /** A run of seen entries by index (a plausible capture batch), or a random handful. */
  private entryRun(k: number): StoredEntry[] {
    const rng = this.rng;
    if (rng.chance(0.6)) {
      const start = rng.pick(this.seenEntries);
      const out = [start];
      for (let i = 1; i < k; i++) {
        const next = this.seenEntries.filter((e) => e.index === out[out.length - 1]!.index + 1);
        if (next.length === 0) break;
        out.push(rng.pick(next));
      }
      return out;
    }
    return rng.sample(this.seenEntries, k);
  }
}
