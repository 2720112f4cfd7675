/**
 * The bundle-mode client's state on disk (DESIGN section 6): highest seq per fleet, the largest
 * verified checkpoint, and evidence of inconsistent checkpoints. A state file that does not read
 * is an error, never a silent reset: a reset would let a server take the client backwards.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { emptyClientState, type ClientState, type ClientStateStore } from '../client/bundle.js';
import { ProtocolError } from '../protocol/errors.js';

function check(json: unknown): ClientState {
  const s = json as Partial<ClientState> | null;
  if (typeof s !== 'object' || s === null || typeof s.fleets !== 'object' || s.fleets === null || !Array.isArray(s.evidence)) throw new Error('bad shape');
  for (const v of Object.values(s.fleets)) if (typeof v?.seq !== 'number') throw new Error('bad seq');
  if (s.checkpoint !== undefined && (typeof s.checkpoint.size !== 'number' || typeof s.checkpoint.root !== 'string' || typeof s.checkpoint.origin !== 'string')) throw new Error('bad checkpoint');
  return s as ClientState;
}

export function fileStateStore(path: string): ClientStateStore {
  return {
    async load() {
      if (!existsSync(path)) return emptyClientState();
      try {
        return check(JSON.parse(readFileSync(path, 'utf8')));
      } catch {
        throw new ProtocolError('TrustFailure', `the client state file ${path} does not read; refusing to start over (move it away only if you know why it broke)`);
      }
    },
    async save(state) {
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, path);
    },
  };
}
