/**
 * Everything non-deterministic the HSM core uses comes through this interface (STYLE.md,
 * "The trusted core reads like a specification"). The software HSM passes the real platform
 * (src/softhsm); the simulator and tests pass a seeded one. The core never reads Date.now,
 * Math.random or crypto.randomBytes itself, and never takes these from the agent.
 */
export type NvramSlot = 0 | 1;

/** Two small slots of non-volatile memory per fleet (DESIGN section 5, "NVRAM"). */
export interface Nvram {
  read(slot: NvramSlot): Uint8Array | null;
  /** Durable when it returns. */
  write(slot: NvramSlot, data: Uint8Array): void;
}

/** The HSM's sealed key storage: identity key, fleet keys, current record-epoch key. */
export interface SecretStore {
  read(): Uint8Array | null;
  /** Durable and atomic when it returns (replace, never partial). */
  write(data: Uint8Array): void;
}

export interface Platform {
  randomBytes(n: number): Uint8Array;
  /** Milliseconds. Used for liveness (persist pacing, expiry), never for a safety check. */
  now(): number;
  nvram: Nvram;
  secrets: SecretStore;
}

/** NVRAM slots hold at most this many bytes (a real HSM's NVRAM is small). */
export const NVRAM_SLOT_BYTES = 128;
