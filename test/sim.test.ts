/**
 * The deterministic simulation (sim/, DESIGN section 5 "Simulator checks"), in a bounded seeded
 * form: every seed must hold S1-S5 and I1, I3, I4, I5 at every step; a seed must reproduce its
 * trace exactly; and deliberately broken cores must be caught, or the checks prove nothing.
 * CI's long form is `npm run sim -- --seeds 500`.
 */
import { describe, expect, it } from 'vitest';
import { runSeed, type SimResult } from '../sim/world.js';
import { mutants, type MutantName } from '../sim/mutants.js';

const SEEDS = 60;
const STEPS = 500;

function describeFailures(r: SimResult, steps: number, mutant?: string): string[] {
  return r.violations.map((v) => `seed ${r.seed} step ${v.step} ${v.check}: ${v.message} (npm run sim -- --seed ${r.seed} --steps ${steps}${mutant ? ` --mutant ${mutant}` : ''})`);
}

describe('deterministic simulation', () => {
  it(`holds every invariant over ${SEEDS} seeds x ${STEPS} steps`, async () => {
    const failures: string[] = [];
    let released = 0;
    let certified = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = await runSeed({ seed, steps: STEPS });
      failures.push(...describeFailures(r, STEPS));
      released += r.stats.released ?? 0;
      certified += r.stats.certTip ?? 0;
    }
    expect(failures).toEqual([]);
    // A simulation in which nothing happens proves nothing: the fleet must have done work.
    expect(certified).toBeGreaterThan(SEEDS * 5);
    expect(released).toBeGreaterThan(SEEDS * 5);
  }, 300_000);

  it('reproduces a seed exactly (same trace hash)', async () => {
    const a = await runSeed({ seed: 7, steps: 150 });
    const b = await runSeed({ seed: 7, steps: 150 });
    const c = await runSeed({ seed: 8, steps: 150 });
    expect(b.traceHash).toBe(a.traceHash);
    expect(c.traceHash).not.toBe(a.traceHash);
  }, 60_000);

  // Evidence that the checks have teeth: each broken core is caught, by the check it breaks.
  const expected: Record<MutantName, string[]> = {
    'commit-without-statements': ['S1', 'S2'],
    'capture-skips-prev': ['S4', 'S1'],
    'statement-before-persist': ['S4'],
  };
  for (const name of Object.keys(mutants) as MutantName[]) {
    it(`catches a core whose ${name.replace(/-/g, ' ')}`, async () => {
      let caught: SimResult | undefined;
      for (let seed = 1; seed <= 40 && !caught; seed++) {
        const r = await runSeed({ seed, steps: STEPS, core: mutants[name] });
        if (r.violations.length > 0) caught = r;
      }
      expect(caught, `${name} was never caught`).toBeDefined();
      expect(expected[name]).toContain(caught!.violations[0]!.check);
    }, 300_000);
  }
});
