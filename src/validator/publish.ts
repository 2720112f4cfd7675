/**
 * The operator's side of bundle publication (`bkv fleet publish`, DESIGN section 6): build the
 * statement for a fleet, sign it with the operator key, submit it with its evidence package to
 * the validator, have the fleet countersign the validated statement, and install the bundle on
 * the fleet's agents. Each step's output is checked before the next step uses it.
 */
import { bytesEqual, fromBase64, fromHex, toBase64 } from '../crypto/bytes.js';
import { bundleToJson, parseBundleJson, type ParsedBundle } from '../protocol/bundle.js';
import { evidenceDigest, formatEvidence, MEASUREMENT_METHOD, type EvidenceMember, type EvidencePolicy } from '../protocol/evidence.js';
import { fleetIdOf, type FleetPublicKeys } from '../protocol/fleet.js';
import type { RouteRange } from '../protocol/ids.js';
import { formatStatement, NO_PREVIOUS, parseSignedStatement, statementLeafHash, type FleetKeysStatement } from '../protocol/statement.js';
import { sign, type SignerKey } from '../protocol/tlog/index.js';

export interface Deployment {
  readonly keys: FleetPublicKeys;
  readonly routes: readonly RouteRange[];
  readonly members: readonly EvidenceMember[];
  readonly policy: EvidencePolicy;
}

export interface StatementDraft {
  readonly deployment: Deployment;
  readonly measurement: Uint8Array;
  /** The operator's latest logged statement (what the new one chains to), if any. */
  readonly previous?: { readonly seq: number; readonly entry: string };
  readonly notBefore: number;
  readonly notAfter: number;
}

/** The evidence package and the operator-signed statement note for a fleet. */
export async function buildSignedStatement(operator: SignerKey, d: StatementDraft): Promise<{ note: string; evidence: Uint8Array; statement: FleetKeysStatement }> {
  const fleetId = fleetIdOf(d.deployment.keys);
  const evidence = formatEvidence({
    fleetId,
    keys: d.deployment.keys,
    routes: d.deployment.routes,
    measurement: { method: MEASUREMENT_METHOD, digest: d.measurement },
    members: d.deployment.members,
    policy: d.deployment.policy,
    attestations: [],
  });
  const statement: FleetKeysStatement = {
    operator: operator.name,
    fleetId,
    seq: (d.previous?.seq ?? 0) + 1,
    prev: d.previous ? statementLeafHash(d.previous.entry) : NO_PREVIOUS,
    notBefore: d.notBefore,
    notAfter: d.notAfter,
    routes: d.deployment.routes,
    evidence: evidenceDigest(evidence),
    measurement: d.measurement,
    keys: d.deployment.keys,
  };
  const note = await sign(formatStatement(statement), [operator]);
  return { note, evidence, statement };
}

export class PublishError extends Error {
  constructor(
    readonly step: 'validator' | 'countersign' | 'install' | 'fleet',
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PublishError';
  }
}

type Fetch = typeof fetch;

async function json(res: Response): Promise<Record<string, unknown>> {
  const body: unknown = await res.json().catch(() => ({}));
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
}

function errorOf(body: Record<string, unknown>, status: number): { code: string; message: string } {
  const e = body.error as { code?: unknown; message?: unknown } | undefined;
  return { code: typeof e?.code === 'string' ? e.code : `HTTP${status}`, message: typeof e?.message === 'string' ? e.message.slice(0, 500) : `HTTP ${status}` };
}

/** The operator's latest logged statement, as the validator reports it. */
export async function fetchChainHead(validator: string, f: Fetch = fetch): Promise<{ seq: number; entry: string } | undefined> {
  const res = await f(`${validator.replace(/\/+$/, '')}/validator/v1/head`, { signal: AbortSignal.timeout(10_000) });
  if (res.status === 404) return undefined;
  const body = await json(res);
  if (!res.ok || typeof body.seq !== 'number' || typeof body.entry !== 'string') throw new PublishError('validator', errorOf(body, res.status).code, 'the validator did not report the chain head');
  return { seq: body.seq, entry: body.entry };
}

export interface Submitted {
  readonly entry: string;
  readonly index: number;
  readonly proof: string;
}

export async function submitStatement(validator: string, note: string, evidence: Uint8Array, f: Fetch = fetch): Promise<Submitted> {
  const res = await f(`${validator.replace(/\/+$/, '')}/validator/v1/submit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ statement: note, evidence: toBase64(evidence) }),
    signal: AbortSignal.timeout(60_000),
  });
  const body = await json(res);
  if (!res.ok) {
    const e = errorOf(body, res.status);
    throw new PublishError('validator', e.code, `the validator refused the statement: ${e.code}: ${e.message}`);
  }
  if (typeof body.entry !== 'string' || typeof body.index !== 'number' || typeof body.proof !== 'string') throw new PublishError('validator', 'Malformed', 'the validator\'s answer is malformed');
  // The logged entry must be our statement, with the operator's signature we made.
  const logged = parseSignedStatement(body.entry);
  const ours = parseSignedStatement(note);
  if (logged.text !== ours.text || !bytesEqual(logged.operatorSignature.signature, ours.operatorSignature.signature) || !logged.validatorSignature) {
    throw new PublishError('validator', 'Malformed', 'the validator logged something else than the submitted statement');
  }
  return { entry: body.entry, index: body.index, proof: body.proof };
}

/** Asks one member's agent to countersign the validated statement. */
export async function requestCountersignature(agent: string, entry: string, f: Fetch = fetch): Promise<Uint8Array> {
  const res = await f(`${agent.replace(/\/+$/, '')}/agent/v1/countersign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ statement: entry }),
    signal: AbortSignal.timeout(30_000),
  });
  const body = await json(res);
  if (!res.ok) {
    const e = errorOf(body, res.status);
    throw new PublishError('countersign', e.code, `the fleet refused to countersign: ${e.message}`);
  }
  if (typeof body.countersignature !== 'string') throw new PublishError('countersign', 'Malformed', 'no countersignature in the answer');
  const sig = fromBase64(body.countersignature);
  if (sig.length !== 64) throw new PublishError('countersign', 'Malformed', 'the countersignature is not 64 bytes');
  return sig;
}

export function assembleBundle(s: Submitted, countersignature: Uint8Array): ParsedBundle {
  return parseBundleJson(bundleToJson({ statement: s.entry, countersignature, proof: s.proof }));
}

/** Installs the bundle on one member's agent, with the log prefix to refresh its proof from. */
export async function installBundle(agent: string, bundle: ParsedBundle, logUrl: string, f: Fetch = fetch): Promise<void> {
  const res = await f(`${agent.replace(/\/+$/, '')}/agent/v1/bundle`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ bundle: bundleToJson(bundle), log: logUrl }),
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok) {
    const e = errorOf(await json(res), res.status);
    throw new PublishError('install', e.code, `the agent refused the bundle: ${e.message}`);
  }
}

/** What an agent reports for the evidence package (`GET /agent/v1/deployment`). */
export async function fetchDeployment(agent: string, f: Fetch = fetch): Promise<Deployment> {
  const res = await f(`${agent.replace(/\/+$/, '')}/agent/v1/deployment`, { signal: AbortSignal.timeout(10_000) });
  const body = await json(res);
  if (!res.ok) throw new PublishError('fleet', errorOf(body, res.status).code, 'the agent did not describe its deployment');
  try {
    const k = body.keys as Record<string, string>;
    const keys: FleetPublicKeys = { opaque: fromBase64(k.opaque!), hpke: fromBase64(k.hpke!), sign: fromBase64(k.sign!) };
    const routes = (body.routes as { from: number; to: number }[]).map((r) => ({ from: r.from, to: r.to }));
    const members = (body.members as { id: string; identityKey?: string }[]).map((m) => {
      const id = fromHex(m.id);
      return m.identityKey ? { id, identityKey: fromBase64(m.identityKey) } : { id };
    });
    const p = body.policy as Record<string, number>;
    return { keys, routes, members, policy: { defaultMaxGuesses: p.defaultMaxGuesses!, reRegistrationLimit: p.reRegistrationLimit!, quorum: p.quorum! } };
  } catch {
    throw new PublishError('fleet', 'Malformed', 'the agent\'s deployment description is malformed');
  }
}
