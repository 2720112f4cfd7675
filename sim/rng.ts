/**
 * The simulator's only source of randomness: a seeded PRNG (sfc32, seeded through splitmix32).
 * Every choice the adversary, the clients and the simulated HSM platforms make comes from a stream
 * derived from the run's seed, so a seed reproduces a run exactly.
 */

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0) {
    const sm = splitmix32((seed ^ Math.imul(stream + 1, 0x27d4eb2d)) >>> 0);
    this.a = sm();
    this.b = sm();
    this.c = sm();
    this.d = sm();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** An independent stream for another actor (a member's platform, a client). */
  fork(stream: number): Rng {
    return new Rng(this.u32(), stream);
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.float() * items.length)]!;
  }

  /** Picks a key by weight; weights of 0 are never picked. */
  weighted<K extends string>(weights: Partial<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((s, [, w]) => s + Math.max(0, w), 0);
    let x = this.float() * total;
    for (const [k, w] of entries) {
      if (w <= 0) continue;
      if (x < w) return k;
      x -= w;
    }
    return entries.find(([, w]) => w > 0)![0];
  }

  fill(out: Uint8Array): Uint8Array {
    for (let i = 0; i < out.length; i += 4) {
      let v = this.u32();
      for (let j = i; j < Math.min(i + 4, out.length); j++) {
        out[j] = v & 0xff;
        v >>>= 8;
      }
    }
    return out;
  }

  bytes(n: number): Uint8Array {
    return this.fill(new Uint8Array(n));
  }

  /** A random subset, in a random order. */
  sample<T>(items: readonly T[], max: number): T[] {
    const copy = [...items];
    const out: T[] = [];
    while (copy.length > 0 && out.length < max) out.push(copy.splice(Math.floor(this.float() * copy.length), 1)[0]!);
    return out;
  }
}

/**
 * Replaces globalThis.crypto.getRandomValues with a seeded stream for the duration of a run: the
 * OPAQUE library (WebAssembly) draws its randomness through it, inside the HSM core (server setup)
 * and in the simulated clients. Returns the function that restores the real one.
 */
export function seedGlobalRandom(rng: Rng): () => void {
  const c = globalThis.crypto as Crypto & { getRandomValues: Crypto['getRandomValues'] };
  const had = Object.prototype.hasOwnProperty.call(c, 'getRandomValues');
  const original = c.getRandomValues;
  c.getRandomValues = (<T extends ArrayBufferView | null>(array: T): T => {
    if (array) rng.fill(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
    return array;
  }) as Crypto['getRandomValues'];
  return () => {
    if (had) c.getRandomValues = original;
    else delete (c as { getRandomValues?: unknown }).getRandomValues;
  };
}
