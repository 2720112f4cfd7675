/**
 * Simulated storage (DESIGN section 3: untrusted). It behaves like the SQLite engine — conditional
 * append of entry and nodes in one transaction, compaction, certificates, the lease row — and the
 * adversary can make it lie: a member's reads may come from an older snapshot (stale reads), the
 * whole store may be rolled back to a snapshot (acknowledged writes lost), and a fork may show
 * some members a second branch that a second leader writes into.
 */
import { toHex } from '../src/crypto/bytes.js';
import { extendsTail } from '../src/storage/links.js';
import type { AppendResult, Lease, NodeWrite, Storage, StoredCertificate, StoredEntry } from '../src/storage/types.js';
import type { Rng } from './rng.js';

interface NodeRec {
  node: Uint8Array;
  obsoleteAt: number | null;
}

/** One state of the store: what a read sees. Values are never mutated in place, so copies share them. */
class State {
  constructor(
    readonly entries = new Map<number, StoredEntry>(),
    /** Entry indices in ascending order. */
    readonly order: number[] = [],
    readonly nodes = new Map<string, NodeRec>(),
    readonly certs = new Map<number, StoredCertificate>(),
  ) {}

  clone(): State {
    return new State(new Map(this.entries), [...this.order], new Map(this.nodes), new Map(this.certs));
  }

  readEntries(from: number, limit: number): StoredEntry[] {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    const out: StoredEntry[] = [];
    for (let i = lo; i < this.order.length && out.length < limit; i++) out.push(this.entries.get(this.order[i]!)!);
    return out;
  }

  insert(e: StoredEntry): void {
    this.entries.set(e.index, e);
    let i = this.order.length;
    while (i > 0 && this.order[i - 1]! > e.index) i--;
    this.order.splice(i, 0, e.index);
  }

  latestCertificate(): StoredCertificate | undefined {
    let best: StoredCertificate | undefined;
    for (const c of this.certs.values()) if (!best || c.index > best.index) best = c;
    return best;
  }
}

export class Branch {
  state = new State();
  lease: Lease | null = null;
  /** Recent snapshots, oldest first: what a stale read or a rollback serves. */
  snapshots: State[] = [];
  mutations = 0;
  private snapshotAt = -1;

  constructor(readonly id: number) {}

  fork(id: number, from: State): Branch {
    const b = new Branch(id);
    b.state = from.clone();
    b.lease = null;
    return b;
  }

  /** Keeps a copy of the current state when it changed since the last one (at most 6 kept). */
  snapshot(): void {
    if (this.mutations === this.snapshotAt) return;
    this.snapshotAt = this.mutations;
    this.snapshots.push(this.state.clone());
    if (this.snapshots.length > 6) this.snapshots.shift();
  }

  append(e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): AppendResult {
    if (this.state.entries.has(e.index)) return { type: 'IndexTaken' };
    // As the real engines: only an entry that extends the stored tail (src/storage/links.ts).
    if (!extendsTail(this.state.entries.get(e.index - 1)?.entry, e.entry, e.index)) return { type: 'NotLinked' };
    this.mutations++;
    this.state.insert({ index: e.index, entry: Uint8Array.from(e.entry), top: e.top ? Uint8Array.from(e.top) : null });
    for (const h of removed) {
      const k = toHex(h);
      const n = this.state.nodes.get(k);
      if (n && n.obsoleteAt === null) this.state.nodes.set(k, { node: n.node, obsoleteAt: e.index });
    }
    for (const n of added) this.state.nodes.set(toHex(n.hash), { node: Uint8Array.from(n.node), obsoleteAt: null });
    return { type: 'Appended' };
  }

  putCertificate(c: StoredCertificate): void {
    if (this.state.certs.has(c.index)) return;
    this.mutations++;
    this.state.certs.set(c.index, { index: c.index, hash: Uint8Array.from(c.hash), statements: c.statements.map((s) => Uint8Array.from(s)) });
  }

  compact(index: number): { nodes: number; entries: number } {
    let nodes = 0;
    let entries = 0;
    for (const [k, n] of this.state.nodes) {
      if (n.obsoleteAt !== null && n.obsoleteAt <= index) {
        this.state.nodes.delete(k);
        nodes++;
      }
    }
    while (this.state.order.length > 0 && this.state.order[0]! < index) {
      this.state.entries.delete(this.state.order.shift()!);
      entries++;
    }
    for (const i of [...this.state.certs.keys()]) if (i < index) this.state.certs.delete(i);
    if (nodes + entries > 0) this.mutations++;
    return { nodes, entries };
  }

  acquireLease(holder: string, ttlMs: number, nowMs: number): Lease {
    if (!this.lease || this.lease.holder === holder || this.lease.expiresAt < nowMs) this.lease = { holder, expiresAt: nowMs + ttlMs };
    return { ...this.lease };
  }

  releaseLease(holder: string): void {
    if (this.lease?.holder === holder) this.lease = { holder, expiresAt: 0 };
  }
}

/** What one member's agent reads: a branch, live or as of one of its snapshots. */
export interface View {
  branch: Branch;
  stale?: State;
}

/** Tampering with the results of reads: the adversary's hostile storage. */
export type ReadTamper = (entries: StoredEntry[]) => StoredEntry[];

/**
 * The whole store: the main branch, any forks, and each member's view. `lostWrites` turns true
 * once storage has lost an acknowledged write or shown a second history: from then on, I4 and S5
 * are no longer expected to hold (DESIGN section 2, I4: "else the fleet halts").
 */
export class SimStore {
  readonly main = new Branch(0);
  readonly branches: Branch[] = [this.main];
  readonly views: View[];
  lostWrites = false;
  readonly tamper: (ReadTamper | undefined)[];

  constructor(members: number) {
    this.views = Array.from({ length: members }, () => ({ branch: this.main }));
    this.tamper = Array.from({ length: members }, () => undefined);
  }

  /** True when every member reads the live main branch and no write was ever lost. */
  get honestNow(): boolean {
    return !this.lostWrites && this.views.every((v) => v.branch === this.main && !v.stale) && this.tamper.every((t) => !t);
  }

  snapshotAll(): void {
    for (const b of this.branches) b.snapshot();
  }

  /** Member m reads an older snapshot of its branch (its writes still go to the live branch). */
  staleRead(m: number, rng: Rng): boolean {
    const v = this.views[m]!;
    if (v.branch.snapshots.length === 0) return false;
    v.stale = rng.pick(v.branch.snapshots);
    return true;
  }

  /** The main branch goes back to one of its snapshots: acknowledged writes are lost. */
  rollback(rng: Rng): boolean {
    if (this.main.snapshots.length === 0) return false;
    const snap = rng.pick(this.main.snapshots);
    this.main.state = snap.clone();
    this.main.mutations++;
    this.lostWrites = true;
    return true;
  }

  /** A second branch from a snapshot (or the live state) of main, shown to the given members. */
  fork(members: number[], rng: Rng): Branch {
    const from = this.main.snapshots.length > 0 && rng.chance(0.5) ? rng.pick(this.main.snapshots) : this.main.state;
    const b = this.main.fork(this.branches.length, from);
    this.branches.push(b);
    for (const m of members) this.views[m] = { branch: b };
    this.lostWrites = true;
    return b;
  }

  heal(): void {
    for (let m = 0; m < this.views.length; m++) {
      this.views[m] = { branch: this.main };
      this.tamper[m] = undefined;
    }
  }

  view(m: number): SimStorage {
    return new SimStorage(this, m);
  }
}

/** The Storage interface over a member's view, as the agent and the shared catch-up code see it. */
export class SimStorage implements Storage {
  readonly engine = 'sqlite' as const;

  constructor(
    private readonly store: SimStore,
    private readonly member: number,
  ) {}

  private get v(): View {
    return this.store.views[this.member]!;
  }

  private get read(): State {
    return this.v.stale ?? this.v.branch.state;
  }

  readEntriesSync(fromIndex: number, limit: number): StoredEntry[] {
    const rows = this.read.readEntries(fromIndex, limit);
    const t = this.store.tamper[this.member];
    return t ? t(rows) : rows;
  }

  appendEntrySync(e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): AppendResult {
    return this.v.branch.append(e, added, removed);
  }

  getNodeSync(hash: Uint8Array): Uint8Array | undefined {
    return this.read.nodes.get(toHex(hash))?.node;
  }

  latestCertificateSync(): StoredCertificate | undefined {
    return this.read.latestCertificate();
  }

  async appendEntry(e: StoredEntry, added: NodeWrite[], removed: Uint8Array[]): Promise<AppendResult> {
    return this.appendEntrySync(e, added, removed);
  }

  async readEntries(fromIndex: number, limit: number): Promise<StoredEntry[]> {
    return this.readEntriesSync(fromIndex, limit);
  }

  async latestEntry(): Promise<StoredEntry | undefined> {
    const o = this.read.order;
    return o.length > 0 ? this.read.entries.get(o[o.length - 1]!) : undefined;
  }

  async getNode(hash: Uint8Array): Promise<Uint8Array | undefined> {
    return this.getNodeSync(hash);
  }

  async putCertificate(c: StoredCertificate): Promise<void> {
    this.v.branch.putCertificate(c);
  }

  async latestCertificate(): Promise<StoredCertificate | undefined> {
    return this.latestCertificateSync();
  }

  async compact(index: number): Promise<{ nodes: number; entries: number }> {
    return this.v.branch.compact(index);
  }

  async acquireLease(holder: string, ttlMs: number, nowMs: number): Promise<Lease> {
    return this.v.branch.acquireLease(holder, ttlMs, nowMs);
  }

  async releaseLease(holder: string): Promise<void> {
    this.v.branch.releaseLease(holder);
  }

  async close(): Promise<void> {}
}
