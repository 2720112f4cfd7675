/** The typed errors of src/protocol/tlog: parse errors (Malformed) and failed checks (TlogError). */
import { ProtocolError } from '../../src/protocol/errors.js';
import { TlogError } from '../../src/protocol/tlog/index.js';

/** Throws unless `e` is one of the typed errors: a parser must never throw anything else. */
export function expectTyped(e: unknown): void {
  const typed = (e instanceof ProtocolError && e.code === 'Malformed') || e instanceof TlogError;
  if (!typed) throw new Error(`unexpected error: ${String(e)}`);
}

/** 'ok', or the code of the typed error the promise rejects with. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    expectTyped(e);
    return e instanceof TlogError ? e.code : 'Malformed';
  }
}
