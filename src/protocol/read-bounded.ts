/**
 * Reads an HTTP response body up to a limit, and stops reading past it, so that a peer cannot make
 * a client, agent, validator or auditor buffer an unbounded body (I8). Browser-safe (streams).
 */
import { ProtocolError } from './errors.js';

export async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw new ProtocolError('TooLarge', `response larger than ${max} bytes`);
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      throw new ProtocolError('TooLarge', `response larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export async function readBoundedText(res: Response, max: number): Promise<string> {
  return new TextDecoder().decode(await readBounded(res, max));
}
