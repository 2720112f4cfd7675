/**
 * A simulated HSM platform (DESIGN section 3: "Only the simulator and tests construct a core with
 * a seeded platform"): a seeded RNG, the simulated clock, and NVRAM and a secret store in memory.
 * NVRAM and secrets survive a crash of the member; everything else the core holds is lost.
 */
import type { Nvram, NvramSlot, Platform, SecretStore } from '../src/hsm/platform.js';
import type { Rng } from './rng.js';

export class MemoryNvram implements Nvram {
  readonly slots: [Uint8Array | null, Uint8Array | null] = [null, null];
  writes = 0;
  read(slot: NvramSlot): Uint8Array | null {
    const s = this.slots[slot];
    return s ? Uint8Array.from(s) : null;
  }
  write(slot: NvramSlot, data: Uint8Array): void {
    this.slots[slot] = Uint8Array.from(data);
    this.writes++;
  }
}

export class MemorySecrets implements SecretStore {
  data: Uint8Array | null = null;
  read(): Uint8Array | null {
    return this.data ? Uint8Array.from(this.data) : null;
  }
  write(data: Uint8Array): void {
    this.data = Uint8Array.from(data);
  }
}

export class SimPlatform implements Platform {
  readonly nvram = new MemoryNvram();
  readonly secrets = new MemorySecrets();

  constructor(
    private readonly rng: Rng,
    private readonly clock: () => number,
    /** This HSM's clock offset: HSM clocks serve liveness only, so they may disagree. */
    private readonly skewMs: number,
  ) {}

  randomBytes(n: number): Uint8Array {
    return this.rng.bytes(n);
  }

  now(): number {
    return this.clock() + this.skewMs;
  }
}
