/**
 * Locates the shared, read-only test vectors. CI checks out shared/ beside the repository, as in
 * development (/work/shared next to /work/main); a missing directory fails loudly rather than
 * skipping the vector tests.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../shared/vectors/', import.meta.url));

if (!existsSync(root)) {
  throw new Error(
    `test vectors not found at ${root}: check out shared/ beside the repository (../shared/vectors)`,
  );
}

export function vectorPath(relative: string): string {
  // path.join, not URL resolution: file names contain characters such as '@', '[' and ']'.
  return join(root, relative);
}

export function readVectorText(relative: string): string {
  return readFileSync(vectorPath(relative), 'utf8');
}

export function readVectorJson(relative: string): unknown {
  return JSON.parse(readVectorText(relative));
}

/** Every `.json` file under a vector folder, as paths relative to the vectors root, sorted. */
export function listJson(relative: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(vectorPath(rel)).sort()) {
      const child = `${rel}${name}`;
      if (statSync(vectorPath(child)).isDirectory()) walk(`${child}/`);
      else if (name.endsWith('.json')) out.push(child);
    }
  };
  walk(relative.endsWith('/') ? relative : `${relative}/`);
  return out;
}
