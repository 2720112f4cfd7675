/**
 * The log's side of c2sp.org/tlog-witness: asks one witness to cosign a checkpoint, with a
 * consistency proof from the size the witness last cosigned. Cosignatures are verified with the
 * witness's key before they are kept (tlog-witness: "The client MUST ignore any cosignatures
 * from unknown keys").
 */
import { formatNote, open, parseNote, type NoteSignature, type VerifierKey } from '../protocol/tlog/index.js';
import { formatAddCheckpoint } from '../witness/witness.js';
import { readBoundedText } from '../protocol/read-bounded.js';

export interface WitnessEndpoint {
  /** The witness's submission prefix. */
  readonly url: string;
  /** Its cosignature key (type 0x04). */
  readonly key: VerifierKey;
}

export type WitnessAnswer =
  | { readonly type: 'Cosigned'; readonly signature: NoteSignature }
  /** 409 with the witness's latest size: ask again from there. */
  | { readonly type: 'Conflict'; readonly size: number | undefined }
  | { readonly type: 'Failed'; readonly message: string };

const MAX_RESPONSE = 16 * 1024;

export async function requestCosignature(
  w: WitnessEndpoint,
  oldSize: number,
  proof: readonly Uint8Array[],
  checkpointNote: string,
  opts: { fetch?: typeof fetch; timeoutMs?: number } = {},
): Promise<WitnessAnswer> {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  let res: Response;
  try {
    res = await doFetch(`${w.url.replace(/\/+$/, '')}/add-checkpoint`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: formatAddCheckpoint({ oldSize, proof, checkpoint: checkpointNote }),
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
    });
  } catch {
    return { type: 'Failed', message: `cannot reach witness ${w.key.name}` };
  }
  let body: string;
  try {
    body = await readBoundedText(res, MAX_RESPONSE);
  } catch {
    return { type: 'Failed', message: `witness ${w.key.name} sent too much, or broke off` };
  }
  if (res.status === 409) {
    const m = /^(0|[1-9][0-9]*)\n$/.exec(body);
    const size = m ? Number(m[1]) : undefined;
    return { type: 'Conflict', size: size !== undefined && Number.isSafeInteger(size) ? size : undefined };
  }
  if (res.status !== 200) return { type: 'Failed', message: `witness ${w.key.name} answered HTTP ${res.status}: ${body.slice(0, 200).trim()}` };
  // tlog-witness: concatenate the signature lines to the checkpoint and open with the witness key.
  try {
    const text = parseNote(checkpointNote).text;
    const opened = await open(formatNote({ text, signatures: parseNote(`${text}\n${body}`).signatures }), [w.key]);
    const mine = opened.verified.find((s) => s.name === w.key.name && s.keyId === w.key.keyId);
    if (!mine) return { type: 'Failed', message: `witness ${w.key.name} sent no cosignature by its key` };
    return { type: 'Cosigned', signature: { name: mine.name, keyId: mine.keyId, signature: mine.signature } };
  } catch (e) {
    return { type: 'Failed', message: `witness ${w.key.name} sent an invalid cosignature: ${(e as Error).message}` };
  }
}
