/** How the SDK reaches a front end. HTTP by default; tests may pass their own. */
import { fromBase64 } from '../crypto/bytes.js';
import type { RequestEnvelope } from '../protocol/channel.js';
import { envelopeToJson, parseErrorJson } from '../protocol/http.js';
import type { ErrorCode } from '../protocol/errors.js';

export type TransportReply = { type: 'Sealed'; body: Uint8Array } | { type: 'Error'; code: ErrorCode; message: string };

export interface Transport {
  send(env: RequestEnvelope): Promise<TransportReply>;
}

export interface HttpTransportOptions {
  /** Base URL of the front end, e.g. http://127.0.0.1:8080 */
  server: string;
  /** The app session token (a JWT from the app's sign-in), sent as a bearer token. */
  sessionToken?: () => Promise<string | undefined> | string | undefined;
  fetch?: typeof fetch;
  timeoutMs?: number;
}

export function httpTransport(opts: HttpTransportOptions): Transport {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const base = opts.server.replace(/\/+$/, '');
  return {
    async send(env) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      const token = await opts.sessionToken?.();
      if (token) headers.authorization = `Bearer ${token}`;
      let res: Response;
      try {
        res = await doFetch(`${base}/v1/request`, { method: 'POST', headers, body: JSON.stringify(envelopeToJson(env)), signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
      } catch (e) {
        // A request that timed out may have been applied: a guess may be spent.
        if ((e as Error).name === 'TimeoutError') return { type: 'Error', code: 'OutcomeUnknown', message: 'the vault did not answer in time: the outcome is unknown' };
        return { type: 'Error', code: 'Unavailable', message: `cannot reach the vault at ${base}` };
      }
      let body: unknown;
      try {
        body = await res.json();
      } catch {
        return { type: 'Error', code: 'Unavailable', message: `the vault answered HTTP ${res.status} without a valid body` };
      }
      if (res.ok && typeof (body as { ct?: unknown }).ct === 'string') {
        try {
          return { type: 'Sealed', body: fromBase64((body as { ct: string }).ct) };
        } catch {
          return { type: 'Error', code: 'Malformed', message: 'the vault sent a malformed response' };
        }
      }
      const err = parseErrorJson(body);
      return err ? { type: 'Error', ...err } : { type: 'Error', code: 'Unavailable', message: `the vault answered HTTP ${res.status}` };
    },
  };
}
