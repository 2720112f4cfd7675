/**
 * Deliberately broken HSM cores: evidence that the simulator's checks have teeth. Each breaks one
 * rule of DESIGN section 5; test/sim.test.ts asserts the simulator catches each within a few seeds.
 * Never used outside the simulator and its tests.
 */
import { bytesEqual } from '../src/crypto/bytes.js';
import { hmacSha256, verifyHmacSha256 } from '../src/crypto/server.js';
import { HsmCore } from '../src/hsm/core.js';
import { decodeHsmSecrets, deriveSubkeys, type Subkeys } from '../src/hsm/keys.js';
import type { Platform } from '../src/hsm/platform.js';
import { decodeEntry, entryHash, entryMacInput, statementMacInput, type Certificate, type Position, type Statement } from '../src/protocol/log.js';
import type { CoreFactory } from './world.js';

/** The core's constructor is private to keep production code on HsmCore.boot; mutants subclass it. */
const Core = HsmCore as unknown as new (platform: Platform) => HsmCore;

/** The private state a mutant reaches into. */
interface Internals {
  captured?: { index: number; hash: Uint8Array; root: Uint8Array };
  fleet?: { fleetId: Uint8Array; subkeys: Subkeys };
}

function fleetKeys(platform: Platform): { subkeys: Subkeys; members: Uint8Array[] } | undefined {
  const stored = platform.secrets.read();
  const fleet = stored ? decodeHsmSecrets(stored).fleet : undefined;
  return fleet ? { subkeys: deriveSubkeys(fleet.secrets.mac), members: fleet.config.members } : undefined;
}

function forge(subkeys: Subkeys, fleetId: Uint8Array, member: Uint8Array, p: Position): Statement {
  return { member, index: p.index, hash: p.hash, mac: hmacSha256(subkeys.capture, statementMacInput(fleetId, member, p)) };
}

/** commit releases responses without checking statements: it certifies its own tip by itself. */
class CommitWithoutStatements extends Core {
  constructor(private readonly plat: Platform) {
    super(plat);
  }
  override commit(cert: Certificate): ReturnType<HsmCore['commit']> {
    const k = fleetKeys(this.plat);
    const p = this.status().captured;
    const fleetId = this.status().fleetId;
    if (!k || !p || !fleetId) return super.commit(cert);
    return super.commit(k.members.map((m) => forge(k.subkeys, fleetId, m, p)));
  }
}

/** captureNext takes the next index without checking that it links to the position (prev). */
class CaptureSkipsPrev extends Core {
  override captureNext(entries: Uint8Array[]): ReturnType<HsmCore['captureNext']> {
    const self = this as unknown as Internals;
    for (const bytes of entries) {
      const c = self.captured;
      const f = self.fleet;
      if (c && f) {
        try {
          const { mac, ...body } = decodeEntry(bytes);
          if (body.index === c.index + 1 && !bytesEqual(body.prev, c.hash) && verifyHmacSha256(f.subkeys.logEntry, mac, entryMacInput(f.fleetId, body))) {
            self.captured = { index: body.index, hash: entryHash(bytes), root: body.root };
            continue;
          }
        } catch {
          // not an entry: let the real code refuse it
        }
      }
      const r = super.captureNext([bytes]);
      if (r.type !== 'Ok') return r;
    }
    const c = self.captured;
    return c ? { type: 'Ok', position: { index: c.index, hash: c.hash } } : super.captureNext([]);
  }
}

/** statement names the captured position, which NVRAM may not hold yet. */
class StatementBeforePersist extends Core {
  constructor(private readonly plat: Platform) {
    super(plat);
  }
  override statement(): ReturnType<HsmCore['statement']> {
    const k = fleetKeys(this.plat);
    const st = this.status();
    if (!k || !st.captured || !st.fleetId || st.halted) return super.statement();
    return { type: 'Ok', statement: forge(k.subkeys, st.fleetId, this.memberId, st.captured) };
  }
}

export const mutants = {
  'commit-without-statements': (p: Platform) => new CommitWithoutStatements(p),
  'capture-skips-prev': (p: Platform) => new CaptureSkipsPrev(p),
  'statement-before-persist': (p: Platform) => new StatementBeforePersist(p),
} satisfies Record<string, CoreFactory>;

export type MutantName = keyof typeof mutants;
