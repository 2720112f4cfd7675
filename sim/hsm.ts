/**
 * The real HSM core of one member, behind a wrapper that watches every call (the agent's and the
 * adversary's alike) and reports to the checker:
 *
 * - S4: the captured position moves only in captureNext, along entries any HSM really made, each
 *   linked to the last (index + 1, prev = hash), or in captureJump, to a certified entry further
 *   on; NVRAM changes only in persist, to the captured position, never backwards; a statement
 *   names exactly what NVRAM holds at that moment (read from the simulated NVRAM itself).
 * - S2: which entry each applied request went into (applyRequest, then closeBatch), so that every
 *   released response can be traced to its entry.
 *
 * After each call the adversary may crash the member right there: between an NVRAM write and the
 * statement that would follow it, between an append and its capture, and so on.
 */
import { toHex } from '../src/crypto/bytes.js';
import type { HsmCore, ReleasedResponse } from '../src/hsm/core.js';
import { readNvram } from '../src/hsm/nvram.js';
import { entryHash, type Position } from '../src/protocol/log.js';
import type { Checker } from './checker.js';
import type { SealedCall } from './client.js';
import type { SimPlatform } from './platform.js';

/** Thrown out of any HSM call when the adversary crashes the member at that point. */
export class Crash extends Error {
  constructor(readonly member: number) {
    super(`member ${member} crashed`);
  }
}

export interface HsmHooks {
  checker: Checker;
  /** Called after every HSM call; throws Crash when the adversary crashes the member there. */
  crashPoint(member: number, op: string): void;
  callOf(envKey: string): SealedCall | undefined;
  /** Every entry an HSM MACs: the adversary sees them all (storage is its own). */
  proposed(entry: Uint8Array, index: number, top: Uint8Array | null): void;
}

interface Snap {
  captured?: Position;
  nvram?: Position;
  leader: boolean;
}

const same = (a: Position | undefined, b: Position | undefined): boolean => (a === undefined ? b === undefined : b !== undefined && a.index === b.index && toHex(a.hash) === toHex(b.hash));
const show = (p: Position | undefined): string => (p ? `(${p.index}, ${toHex(p.hash).slice(0, 8)})` : 'nothing');

export class SimHsm {
  /** Open handle -> the envelope it opened (by enc). */
  private readonly opened = new Map<number, string>();
  /** Handles applied to the open batch. */
  private batch: number[] = [];
  /** Handle -> hash of the entry it was applied in. */
  private readonly entryOfHandle = new Map<number, string>();
  calls = 0;

  constructor(
    readonly member: number,
    readonly core: HsmCore,
    private readonly platform: SimPlatform,
    private readonly fleetId: Uint8Array,
    private readonly hooks: HsmHooks,
  ) {}

  private nvramCache: { writes: number; position: Position | undefined } | undefined;

  /** The position in this member's NVRAM, read from the simulated NVRAM itself (not the core). */
  nvram(): Position | undefined {
    const writes = this.platform.nvram.writes;
    if (this.nvramCache?.writes !== writes) this.nvramCache = { writes, position: readNvram(this.platform.nvram, this.fleetId)?.position };
    return this.nvramCache.position;
  }

  private snap(): Snap {
    const st = this.core.status();
    return { captured: st.captured, nvram: this.nvram(), leader: st.leader };
  }

  private get checker(): Checker {
    return this.hooks.checker;
  }

  private fail(check: string, message: string): void {
    this.checker.fail(check, `member ${this.member}: ${message}`);
  }

  /** Runs one core call, checks how it moved the position and NVRAM, then offers a crash point. */
  private call<T>(op: string, f: () => T, moved?: (before: Snap, after: Snap, r: T) => void, effects?: (r: T) => void): T {
    this.calls++;
    const before = this.snap();
    const r = f();
    const after = this.snap();
    if (!same(before.captured, after.captured)) {
      if (moved) moved(before, after, r);
      else this.fail('S4', `${op} moved the captured position from ${show(before.captured)} to ${show(after.captured)}`);
    }
    if (!same(before.nvram, after.nvram)) {
      if (op !== 'persist') this.fail('S4', `${op} wrote NVRAM`);
      else if (!same(after.nvram, before.captured)) this.fail('S4', `persist wrote ${show(after.nvram)} to NVRAM, not the captured ${show(before.captured)}`);
      if (before.nvram && after.nvram && after.nvram.index < before.nvram.index) this.fail('S4', `NVRAM went back from ${show(before.nvram)} to ${show(after.nvram)}`);
    }
    if (before.leader && !after.leader) this.batch = [];
    // What left the HSM is checked before any crash: a crash does not unsend it.
    effects?.(r);
    this.hooks.crashPoint(this.member, op);
    return r;
  }

  private release(released: ReleasedResponse[] | undefined): void {
    for (const r of released ?? []) {
      if (r.response.type !== 'Sealed') continue;
      const env = this.opened.get(r.handle);
      this.checker.onReleased(this.member, this.entryOfHandle.get(r.handle), env ? this.hooks.callOf(env) : undefined, r.response.body);
      this.opened.delete(r.handle);
      this.entryOfHandle.delete(r.handle);
    }
  }

  status(): ReturnType<HsmCore['status']> {
    return this.core.status();
  }

  isLeader(): boolean {
    return this.core.isLeader();
  }

  captureNext(entries: Uint8Array[]): ReturnType<HsmCore['captureNext']> {
    return this.call(
      'captureNext',
      () => this.core.captureNext(entries),
      (before, after) => {
        // S4: the new position must be reachable from the old one by verified links.
        let cur = before.captured;
        let ok = false;
        for (const bytes of entries) {
          const hash = toHex(entryHash(bytes));
          const info = this.checker.entryOf(hash);
          if (!info) break;
          if (!cur) {
            if (!before.nvram || before.nvram.index !== info.index || toHex(before.nvram.hash) !== hash) break;
          } else if (info.index !== cur.index + 1 || info.prev !== toHex(cur.hash)) break;
          cur = { index: info.index, hash: entryHash(bytes) };
          if (same(cur, after.captured)) {
            ok = true;
            break;
          }
        }
        if (!ok) this.fail('S4', `captureNext moved from ${show(before.captured)} to ${show(after.captured)} without a verified link`);
      },
      (r) => {
        if (r.type === 'Ok') this.release(r.steppedDown);
      },
    );
  }

  captureJump(target: Uint8Array, cert: Parameters<HsmCore['captureJump']>[1], links: Uint8Array[]): ReturnType<HsmCore['captureJump']> {
    return this.call(
      'captureJump',
      () => this.core.captureJump(target, cert, links),
      (before, after) => {
        const to = { index: after.captured!.index, hash: after.captured!.hash };
        const from = before.captured ?? before.nvram;
        if (toHex(to.hash) !== toHex(entryHash(target))) this.fail('S4', `captureJump moved to ${show(to)}, not to its target`);
        if (from && to.index <= from.index) this.fail('S4', `captureJump moved from ${show(from)} back to ${show(to)}`);
        this.checker.claimCertified(this.member, to, 'captureJump');
        this.checker.stats.jumps++;
      },
      (r) => {
        if (r.type === 'Ok') this.release(r.steppedDown);
      },
    );
  }

  persist(): ReturnType<HsmCore['persist']> {
    return this.call('persist', () => this.core.persist());
  }

  statement(): ReturnType<HsmCore['statement']> {
    return this.call('statement', () => this.core.statement(), undefined, (r) => {
      // S4: checked against the NVRAM itself, at the moment the statement leaves the HSM.
      if (r.type === 'Ok') this.checker.onStatement(this.member, r.statement, this.nvram());
    });
  }

  commit(cert: Parameters<HsmCore['commit']>[0]): ReturnType<HsmCore['commit']> {
    return this.call('commit', () => this.core.commit(cert), undefined, (r) => {
      if (r.type === 'Committed') {
        const c = this.core.status().committed;
        if (c) this.checker.claimCertified(this.member, c, 'commit');
      }
      if (r.type !== 'InvalidCertificate') this.release(r.released);
    });
  }

  becomeLeader(top: Parameters<HsmCore['becomeLeader']>[0]): ReturnType<HsmCore['becomeLeader']> {
    return this.call('becomeLeader', () => this.core.becomeLeader(top), undefined, (r) => {
      if (r.type !== 'Ok') return;
      this.batch = [];
      this.checker.stats.leaders++;
      // DESIGN section 5: a leader starts from its persisted position.
      if (!same(r.position, this.nvram())) this.fail('S4', `became leader at ${show(r.position)}, NVRAM holds ${show(this.nvram())}`);
    });
  }

  stepDown(): ReleasedResponse[] {
    return this.call('stepDown', () => this.core.stepDown(), undefined, (r) => {
      this.batch = [];
      this.release(r);
    });
  }

  openRequest(env: Parameters<HsmCore['openRequest']>[0]): ReturnType<HsmCore['openRequest']> {
    return this.call('openRequest', () => this.core.openRequest(env), undefined, (r) => {
      if (r.type === 'Opened') this.opened.set(r.handle, toHex(env.enc));
    });
  }

  applyRequest(handle: number, nodes: Uint8Array[]): ReturnType<HsmCore['applyRequest']> {
    return this.call('applyRequest', () => this.core.applyRequest(handle, nodes), undefined, (r) => {
      if (r.type === 'Applied') this.batch.push(handle);
    });
  }

  closeBatch(epochNodes: Uint8Array[] = []): ReturnType<HsmCore['closeBatch']> {
    return this.call('closeBatch', () => this.core.closeBatch(epochNodes), undefined, (p) => {
      if (p.type !== 'Proposed') return;
      const info = this.checker.registerEntry(p.entry, p.added);
      this.hooks.proposed(p.entry, p.index, p.top);
      for (const h of this.batch) this.entryOfHandle.set(h, info.hash);
      this.batch = [];
    });
  }

  // ---- record epochs: no position or NVRAM change allowed, watched like every other call ----

  epochInfo(): ReturnType<HsmCore['epochInfo']> {
    return this.core.epochInfo();
  }

  learnEpoch(nodes: Uint8Array[]): ReturnType<HsmCore['learnEpoch']> {
    return this.call('learnEpoch', () => this.core.learnEpoch(nodes));
  }

  reseal(recordId: Uint8Array, nodes: Uint8Array[]): ReturnType<HsmCore['reseal']> {
    return this.call('reseal', () => this.core.reseal(recordId, nodes));
  }

  touchEpochState(): void {
    this.call('touchEpochState', () => this.core.touchEpochState());
  }
}
