/**
 * The HSM code measurement (DESIGN section 7), method `bkv-hsm-js/v1`: SHA-256 over the compiled
 * JavaScript of the trusted core and everything it imports (`hsm/`, `protocol/`, `crypto/` under
 * `dist/src`), file by file in sorted path order, each as its length-prefixed relative path and
 * length-prefixed contents. `tsc` output is a function of the sources and the compiler version,
 * so two builds of one tagged release give one measurement (docs/decisions.md, "HSM code
 * measurement", on what is and is not checked yet).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { utf8 } from '../crypto/bytes.js';
import { sha256 } from '../crypto/sha256.js';
import { Writer } from '../protocol/encoding.js';
import { MEASUREMENT_METHOD } from '../protocol/evidence.js';

/** The folders whose code runs inside the HSM boundary. */
export const MEASURED_FOLDERS = ['hsm', 'protocol', 'crypto'] as const;

function walk(dir: string, out: string[]): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.js')) out.push(p);
  }
}

/** Measures the compiled code under `root` (default: the `dist/src` this module runs from). */
export function measureHsmCode(root = fileURLToPath(new URL('../', import.meta.url))): { method: string; digest: Uint8Array; files: number } {
  const files: string[] = [];
  for (const f of MEASURED_FOLDERS) walk(join(root, f), files);
  if (files.length === 0) throw new Error(`no compiled HSM code under ${root}: run npm run build`);
  const rel = files.map((f) => relative(root, f).split(sep).join('/')).sort();
  const w = new Writer().label('bkv/v1/measurement').string(MEASUREMENT_METHOD).u32(rel.length);
  for (const r of rel) w.bytes(utf8(r)).bytes(new Uint8Array(readFileSync(join(root, r))));
  return { method: MEASUREMENT_METHOD, digest: sha256(w.finish()), files: rel.length };
}
