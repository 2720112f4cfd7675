/**
 * The simulator's invariants (DESIGN section 5, "Simulator checks", and section 2), checked over
 * everything ever issued, against ground truth the harness keeps outside the HSMs:
 *
 * - every entry any HSM ever MACed (genesis and every closeBatch), with the record slots it wrote
 *   (opened with the fleet's record key, which the harness reads from the simulated secret store);
 * - every statement any HSM ever issued. An entry is *certified* when statements for it or for a
 *   descendant come from a majority of distinct members; that is what a certificate proves, so it
 *   is computed here from what was issued, never from what an HSM says it accepted.
 *
 * S1 certified entries form one chain; S2 every released response lies in a certified entry;
 * S3 per record, KE2s released per guess epoch are at most maxGuesses, over all branches;
 * S4 positions move only by a verified link or a certified jump, and statements name exactly the
 * NVRAM position (checked by the HSM wrapper, hsm.ts); S5 liveness (world.ts).
 * I1 guessesLeft told to clients is exact; I3 no KE2 or key from a destroyed record;
 * I4/I5 what clients are told matches the certified state, which never goes back.
 */
import { toHex } from '../src/crypto/bytes.js';
import { decodeEntry, entryHash, type Position, type Statement } from '../src/protocol/log.js';
import type { VaultResponse } from '../src/protocol/messages.js';
import { leafEpoch, openSlot, type RecordSlot } from '../src/hsm/record.js';
import { nextEpochKey } from '../src/hsm/keys.js';
import { openLoginState } from '../src/hsm/states.js';
import { decodeNode, type AddedNode } from '../src/hsm/tree.js';
import type { SealedCall } from './client.js';

export interface Violation {
  step: number;
  check: string;
  message: string;
}

interface EntryInfo {
  hash: string;
  index: number;
  prev: string;
  /** Record slots this entry wrote, by record id (hex). */
  leaves: Map<string, RecordSlot>;
}

interface RecState {
  index: number;
  slot: RecordSlot;
}

export interface CheckerSetup {
  members: number;
  fleetId: Uint8Array;
  /** The key of record epoch 0; later ones follow from it (keys.ts, nextEpochKey). */
  epochKey: Uint8Array;
  loginStateKey: Uint8Array;
  /** Record ids (hex) of the simulated users: the leaves the checker follows. */
  records: Set<string>;
  recordIdOf(userId: string): string;
  reRegistrationLimit: number;
}

export class Checker {
  readonly violations: Violation[] = [];
  step = 0;
  readonly majority: number;
  private readonly entries = new Map<string, EntryInfo>();
  private readonly support = new Map<string, Set<number>>();
  /** Ground truth: the certified entry at each index. Prefix-closed by construction. */
  readonly certChain = new Map<number, string>();
  certTip = 0;
  private processed = 0;
  private readonly history = new Map<string, RecState[]>();
  private readonly releasedGuesses = new Set<string>();
  /** Attempts whose KE3 succeeded, by record and generation, from released RecoverFinish answers. */
  private readonly successes = new Map<string, number[]>();
  /** First 32 bytes (the response nonce) of every released body -> the entry it came from. */
  readonly releasedBodies = new Map<string, number>();
  stats = { entries: 0, statements: 0, released: 0, ke2: 0, certified: 0, told: 0, maxEpoch: 0, jumps: 0, leaders: 0, refusals: 0 };
  private readonly epochKeys: Uint8Array[];
  /** Released answers by type and outcome (coverage, not a check). */
  readonly outcomes: Record<string, number> = {};

  constructor(private readonly setup: CheckerSetup) {
    this.majority = Math.floor(setup.members / 2) + 1;
    this.epochKeys = [setup.epochKey];
  }

  private epochKey(epoch: number): Uint8Array | undefined {
    if (epoch > 10_000) return undefined;
    while (this.epochKeys.length <= epoch) this.epochKeys.push(nextEpochKey(this.epochKeys[this.epochKeys.length - 1]!, this.epochKeys.length));
    if (epoch > this.stats.maxEpoch) this.stats.maxEpoch = epoch;
    return this.epochKeys[epoch];
  }

  fail(check: string, message: string): void {
    this.violations.push({ step: this.step, check, message });
  }

  // ---- entries ------------------------------------------------------------------------------

  /** Every entry an HSM MACs passes through here (genesis, closeBatch). */
  registerEntry(bytes: Uint8Array, added: AddedNode[] = []): EntryInfo {
    const hash = toHex(entryHash(bytes));
    const known = this.entries.get(hash);
    if (known) return known;
    const e = decodeEntry(bytes);
    const leaves = new Map<string, RecordSlot>();
    for (const a of added) {
      const n = decodeNode(a.node);
      if (!n || n.kind !== 'Leaf') continue;
      const rec = toHex(n.key);
      if (!this.setup.records.has(rec)) continue; // the epoch accounting leaf, or not a user of ours
      const key = n.value.length >= 4 ? this.epochKey(leafEpoch(n.value)) : undefined;
      const slot = key ? openSlot(key, this.setup.fleetId, n.key, n.value) : null;
      if (!slot) {
        this.fail('I5', `entry ${e.index} holds a record leaf the fleet's record keys do not open`);
        continue;
      }
      leaves.set(rec, slot);
    }
    const info: EntryInfo = { hash, index: e.index, prev: toHex(e.prev), leaves };
    this.entries.set(hash, info);
    this.stats.entries++;
    return info;
  }

  entryOf(hash: string): EntryInfo | undefined {
    return this.entries.get(hash);
  }

  genesis(bytes: Uint8Array): void {
    const info = this.registerEntry(bytes);
    this.certChain.set(0, info.hash);
  }

  // ---- S1: certification from issued statements ----------------------------------------------

  /** A statement an HSM issued. S4: it names exactly the position in that member's NVRAM. */
  onStatement(member: number, s: Statement, nvram: Position | undefined): void {
    this.stats.statements++;
    const hash = toHex(s.hash);
    if (!nvram || nvram.index !== s.index || toHex(nvram.hash) !== hash) {
      this.fail('S4', `member ${member} stated (${s.index}, ${hash.slice(0, 8)}) but its NVRAM holds ${nvram ? `(${nvram.index}, ${toHex(nvram.hash).slice(0, 8)})` : 'nothing'}`);
    }
    if (!this.entries.has(hash)) {
      this.fail('S4', `member ${member} stated an entry no HSM ever made: (${s.index}, ${hash.slice(0, 8)})`);
      return;
    }
    // The statement counts toward the entry and every ancestor (DESIGN section 5, "Certificate").
    let h: string | undefined = hash;
    while (h) {
      const info = this.entries.get(h);
      if (!info) break;
      let sup = this.support.get(h);
      if (!sup) this.support.set(h, (sup = new Set()));
      if (sup.has(member)) break;
      sup.add(member);
      if (sup.size >= this.majority) this.certify(info);
      h = info.index > 0 ? info.prev : undefined;
    }
    this.processCertified();
  }

  private certify(info: EntryInfo): void {
    const at = this.certChain.get(info.index);
    if (at === info.hash) return;
    if (at !== undefined) {
      this.fail('S1', `two different entries at index ${info.index} are both certified (${at.slice(0, 8)} and ${info.hash.slice(0, 8)}): the fleet forked`);
      return;
    }
    this.certChain.set(info.index, info.hash);
    this.stats.certified++;
    if (info.index > this.certTip) this.certTip = info.index;
  }

  isCertified(index: number, hash: Uint8Array | string): boolean {
    return this.certChain.get(index) === (typeof hash === 'string' ? hash : toHex(hash));
  }

  /** An HSM treats (index, hash) as committed (commit, captureJump): it must be certified. */
  claimCertified(member: number, p: Position, how: string): void {
    if (!this.isCertified(p.index, p.hash)) {
      this.fail('S1', `member ${member} accepted (${p.index}, ${toHex(p.hash).slice(0, 8)}) as certified in ${how}, but no majority ever stated it or a descendant`);
    }
  }

  private processCertified(): void {
    for (;;) {
      const hash = this.certChain.get(this.processed + 1);
      if (!hash) return;
      this.processed++;
      const info = this.entries.get(hash)!;
      for (const [rec, slot] of info.leaves) this.advanceRecord(rec, info.index, slot);
    }
  }

  // ---- I5: the certified state of a record never goes back -----------------------------------

  private advanceRecord(rec: string, index: number, slot: RecordSlot): void {
    let h = this.history.get(rec);
    if (!h) this.history.set(rec, (h = []));
    const p = h[h.length - 1]?.slot;
    const where = `record ${rec.slice(0, 8)} at entry ${index}`;
    if (slot.state === 'active') {
      if (slot.guessesUsed > slot.maxGuesses) this.fail('I1', `${where}: ${slot.guessesUsed} guesses used of ${slot.maxGuesses}`);
      if (slot.destructions > this.setup.reRegistrationLimit) this.fail('I5', `${where}: registered after ${slot.destructions} destructions (limit ${this.setup.reRegistrationLimit})`);
    }
    if (p) {
      if (slot.attempt < p.attempt) this.fail('I5', `${where}: attempt went back from ${p.attempt} to ${slot.attempt}`);
      if (slot.generation < p.generation) this.fail('I5', `${where}: generation went back from ${p.generation} to ${slot.generation}`);
      if (slot.destructions < p.destructions) this.fail('I5', `${where}: destructions went back from ${p.destructions} to ${slot.destructions}`);
      if (p.state === 'tombstone' && slot.state === 'active' && slot.generation <= p.generation) this.fail('I3', `${where}: a destroyed record came back without a new registration`);
      if (p.state === 'active' && slot.state === 'active' && slot.generation === p.generation) {
        // Within a generation the reset point (attempt - guessesUsed) only moves forward: a
        // smaller one is a guess counter reset without a successful login (I1, I5).
        if (slot.attempt - slot.guessesUsed < p.attempt - p.guessesUsed) this.fail('I5', `${where}: guess counter reset without a successful login`);
        if (slot.finishedAttempt < p.finishedAttempt) this.fail('I5', `${where}: finished attempt went back`);
        if (slot.maxGuesses !== p.maxGuesses) this.fail('I5', `${where}: maxGuesses changed within a generation`);
      }
    }
    h.push({ index, slot });
  }

  /** The certified state of a record before entry `index`, and the one `index` wrote, if any. */
  private around(rec: string, index: number): { before?: RecordSlot; at?: RecordSlot; states: RecState[] } {
    const h = this.history.get(rec) ?? [];
    let before: RecordSlot | undefined;
    let at: RecordSlot | undefined;
    for (const s of h) {
      if (s.index < index) before = s.slot;
      else if (s.index === index) at = s.slot;
    }
    return { before, at, states: h };
  }

  // ---- S2, S3 and the per-response checks ----------------------------------------------------

  /**
   * A response left an HSM. `entry` is the entry its request was applied in (tracked by the HSM
   * wrapper from applyRequest to closeBatch), `call` the sealed request it answers.
   */
  onReleased(member: number, entry: string | undefined, call: SealedCall | undefined, body: Uint8Array): void {
    this.stats.released++;
    const info = entry ? this.entries.get(entry) : undefined;
    if (!info) {
      this.fail('S2', `member ${member} released a response whose request is in no entry it proposed`);
      return;
    }
    if (!this.isCertified(info.index, info.hash)) {
      this.fail('S2', `member ${member} released a response of entry ${info.index} (${info.hash.slice(0, 8)}), which no majority has stated`);
    }
    this.releasedBodies.set(toHex(body.subarray(0, 32)), info.index);
    if (!call) return; // a request the harness did not seal (none today)
    let res: VaultResponse;
    try {
      res = call.open(body);
    } catch {
      this.fail('S2', `member ${member} released a body that does not answer its request`);
      return;
    }
    this.checkResponse(call, res, info.index);
  }

  private checkResponse(call: SealedCall, res: VaultResponse, e: number): void {
    const k = `${res.type}:${res.outcome === 'Ok' ? 'Ok' : res.code}`;
    this.outcomes[k] = (this.outcomes[k] ?? 0) + 1;
    const userId = call.request.userId;
    const rec = this.setup.recordIdOf(userId);
    const { before, at, states } = this.around(rec, e);
    const who = `${userId} (entry ${e})`;
    if (res.type === 'RecoverStart' && res.outcome === 'Ok') {
      this.stats.ke2++;
      const ls = openLoginState(this.setup.loginStateKey, this.setup.fleetId, res.state);
      if (!ls) {
        this.fail('S3', `${who}: a released KE2 carries a login state the fleet cannot open`);
        return;
      }
      const g = ls.generation;
      const a = ls.attempt;
      this.checkLive(who, before, g);
      // S3: each counted guess is released at most once, over all branches.
      const key = `${rec}:${g}:${a}`;
      if (this.releasedGuesses.has(key)) this.fail('S3', `${who}: the KE2 of generation ${g} attempt ${a} was released twice`);
      this.releasedGuesses.add(key);
      // The guess epoch: attempts since the last reset point below a. Reset points are where
      // a certified state puts them (attempt - guessesUsed), and the attempts of released
      // successful KE3s: a batch that ends the generation (a tombstone) hides its own reset,
      // but its responses are released together, in the order they were applied.
      let reset: number | undefined;
      let max: number | undefined;
      for (const s of states) {
        if (s.index > e || s.slot.state !== 'active' || s.slot.generation !== g) continue;
        max = s.slot.maxGuesses;
        const r = s.slot.attempt - s.slot.guessesUsed;
        if (r < a && (reset === undefined || r > reset)) reset = r;
      }
      for (const r of this.successes.get(`${rec}:${g}`) ?? []) if (r < a && (reset === undefined || r > reset)) reset = r;
      if (reset === undefined || max === undefined) return; // registered in this very entry
      const used = a - reset;
      if (used > max) this.fail('S3', `${who}: KE2 for the ${used}th guess since the last success, maxGuesses ${max}`);
      if (res.guessesLeft !== max - used) this.fail('I1', `${who}: told ${res.guessesLeft} guesses left, the certified count says ${max - used}`);
      return;
    }
    if (res.type === 'RecoverFinish' && res.outcome === 'Ok') {
      this.checkLive(who, before, res.generation);
      const k = `${rec}:${res.generation}`;
      this.successes.set(k, [...(this.successes.get(k) ?? []), res.attempt]);
      return;
    }
    if (res.type === 'Status' && res.outcome === 'Ok' && !at) {
      // I5: what the client is told is the certified state (this entry did not touch the record).
      const want = !before ? 'none' : before.state;
      if (res.state !== want) {
        this.fail(want === 'none' ? 'I5' : 'I4', `${who}: status says ${res.state}, the certified record is ${want}`);
        return;
      }
      if (before?.state === 'active') {
        const left = before.maxGuesses - before.guessesUsed;
        if (res.guessesLeft !== left || res.maxGuesses !== before.maxGuesses || res.failuresSinceLastSuccess !== before.failuresSinceLastSuccess) {
          this.fail('I5', `${who}: status says ${res.guessesLeft}/${res.maxGuesses} left (${res.failuresSinceLastSuccess} failures), the certified record ${left}/${before.maxGuesses} (${before.failuresSinceLastSuccess})`);
        }
      }
      return;
    }
    if (res.outcome === 'Error' && res.code === 'NotRegistered' && before) {
      this.fail('I4', `${who}: told NotRegistered, but the certified record exists (${before.state}, generation ${before.generation})`);
    }
  }

  /** I3: nothing is released from a record generation that was destroyed or replaced before. */
  private checkLive(who: string, before: RecordSlot | undefined, generation: number): void {
    if (!before) return;
    if (before.generation > generation) this.fail('I3', `${who}: released for generation ${generation}, but the record was already at generation ${before.generation}`);
    else if (before.state === 'tombstone' && before.generation >= generation) this.fail('I3', `${who}: released for generation ${generation} of a destroyed record`);
  }

  /**
   * I4 (honest storage): what storage's newest entry holds for a record, read back through its
   * tree. If that entry is certified, the record must be there and be the certified state: a
   * success a client was told about is still in the state the fleet will serve.
   */
  storedRecord(index: number, entryHashHex: string, rec: string, leaf: Uint8Array | undefined): void {
    if (!this.isCertified(index, entryHashHex)) return;
    const { before, at } = this.around(rec, index);
    const want = at ?? before;
    const where = `record ${rec.slice(0, 8)} in storage's tree at entry ${index}`;
    if (!want) {
      if (leaf) this.fail('I4', `${where}: a record the certified log never wrote`);
      return;
    }
    if (!leaf) {
      this.fail('I4', `${where}: missing, but the certified log holds it (${want.state}, generation ${want.generation})`);
      return;
    }
    const key = leaf.length >= 4 ? this.epochKey(leafEpoch(leaf)) : undefined;
    const slot = key ? openSlot(key, this.setup.fleetId, Uint8Array.from(Buffer.from(rec, 'hex')), leaf) : null;
    if (!slot) {
      this.fail('I4', `${where}: the leaf does not open`);
      return;
    }
    if (slot.state !== want.state || slot.generation !== want.generation || slot.attempt !== want.attempt || (slot.state === 'active' && want.state === 'active' && slot.guessesUsed !== want.guessesUsed)) {
      this.fail('I4', `${where}: holds ${slot.state} g${slot.generation} a${slot.attempt}, the certified log ${want.state} g${want.generation} a${want.attempt}`);
    }
  }

  /** A client opened an answer: it must be one some HSM released from a certified entry. */
  told(userId: string, body: Uint8Array): void {
    this.stats.told++;
    const e = this.releasedBodies.get(toHex(body.subarray(0, 32)));
    if (e === undefined) this.fail('S2', `${userId} was told an answer no HSM released`);
  }
}
