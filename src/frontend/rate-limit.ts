/**
 * Per-account-tag KE1 limit (DESIGN section 4: a configured number of KE1s per tag per day).
 * It is a cost control and an early warning; the guess limit itself is enforced by the HSMs (I1),
 * so a front end that forgets its counters (restart, another replica) weakens nothing safety needs.
 */
export class DailyRateLimiter {
  private day = -1;
  private counts = new Map<string, number>();

  constructor(
    readonly perDay: number,
    private readonly now: () => number = Date.now,
    private readonly maxTracked = 1_000_000,
  ) {}

  /** Counts one event for `key`; false when the key is over its daily limit. */
  take(key: string): boolean {
    const day = Math.floor(this.now() / 86_400_000);
    if (day !== this.day) {
      this.day = day;
      this.counts = new Map();
    }
    const n = this.counts.get(key) ?? 0;
    if (n >= this.perDay) return false;
    if (n === 0 && this.counts.size >= this.maxTracked) return false;
    this.counts.set(key, n + 1);
    return true;
  }
}
