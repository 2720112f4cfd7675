/**
 * The front end (DESIGN section 3): untrusted, stateless, many replicas. It checks the app session
 * against the account tag, rate-limits KE1s per tag, and relays ciphertext to the fleet's leader.
 * It never sees a password, a key or a user id inside the vault protocol (I6).
 */
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { fromBase64, toHex } from '../crypto/bytes.js';
import { httpStatusOf, parseErrorJson } from '../protocol/http.js';
import { EnvelopeSchema, STRICT_AJV } from '../protocol/schemas.js';
import { BundleQuerySchema } from '../protocol/bundle-schema.js';
import type { ErrorCode } from '../protocol/errors.js';
import { DailyRateLimiter } from './rate-limit.js';
import type { SessionVerifier } from './auth.js';
import { openApiDocument } from './openapi.js';

export interface FrontendOptions {
  /** Base URLs of the fleet's agents; requests go to the one that leads. */
  agents: string[];
  sessions: SessionVerifier;
  ke1PerTagPerDay: number;
  log: Logger;
  /** Timeout of one relayed request. */
  agentTimeoutMs?: number;
  /** How long to look for a leader while members fail over. */
  failoverWaitMs?: number;
}

/** Whether a failed fetch never connected, so the agent cannot have seen the request. */
function notConnected(e: unknown): boolean {
  const code = (e as { cause?: { code?: unknown } }).cause?.code;
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

export function buildFrontend(opts: FrontendOptions) {
  const app = Fastify({ loggerInstance: opts.log as FastifyBaseLogger, bodyLimit: 16 * 1024, disableRequestLogging: true, ajv: STRICT_AJV }).withTypeProvider<TypeBoxTypeProvider>();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({ name: 'bkv_frontend_requests_total', help: 'Relayed vault requests by message type and outcome', labelNames: ['type', 'outcome'], registers: [registry] });
  const latency = new Histogram({ name: 'bkv_frontend_request_seconds', help: 'Latency of relayed vault requests', labelNames: ['type'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
  const limiter = new DailyRateLimiter(opts.ke1PerTagPerDay);
  let leader = 0;

  const fail = (code: ErrorCode, message: string) => ({ status: httpStatusOf(code), body: { error: { code, message } } });

  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: { code: 'BadRequest', message: 'no such endpoint' } }));
  app.setErrorHandler((err: { validation?: unknown; statusCode?: number }, _req, reply) => {
    if (err.validation) return reply.code(400).send({ error: { code: 'Malformed', message: 'request does not match the schema' } });
    if (err.statusCode === 413) return reply.code(413).send({ error: { code: 'TooLarge', message: 'request too large' } });
    if (err.statusCode === 415) return reply.code(400).send({ error: { code: 'Malformed', message: 'expected application/json' } });
    if (err.statusCode && err.statusCode < 500) return reply.code(400).send({ error: { code: 'Malformed', message: 'bad request' } });
    return reply.code(500).send({ error: { code: 'Internal', message: 'internal error' } });
  });

  /**
   * Sends the envelope to the member that leads. While a failover is under way every member may
   * answer NotLeader or be unreachable: retry until `failoverWaitMs`. A request that reached a
   * leader is never retried (it may have been applied).
   */
  async function relay(body: unknown): Promise<{ status: number; body: unknown }> {
    const deadline = Date.now() + (opts.failoverWaitMs ?? 5000);
    for (let round = 0; ; round++) {
      for (let tries = 0; tries < opts.agents.length; tries++) {
        const i = (leader + tries) % opts.agents.length;
        let res: Response;
        try {
          res = await fetch(`${opts.agents[i]}/agent/v1/request`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(opts.agentTimeoutMs ?? 30_000) });
        } catch (e) {
          if ((e as Error).name === 'TimeoutError') return fail('OutcomeUnknown', 'the fleet did not answer in time: a guess may have been spent');
          // Only a request that never reached the member may go to another one: a member that
          // failed after receiving it (e.g. killed mid-request) may have applied it.
          if (!notConnected(e)) return fail('OutcomeUnknown', 'the fleet member handling the request failed: a guess may have been spent');
          continue;
        }
        const json: unknown = await res.json().catch(() => undefined);
        const err = parseErrorJson(json);
        if (err?.code === 'NotLeader') continue;
        leader = i;
        if (res.ok) return { status: 200, body: json };
        return err ? fail(err.code, err.message) : fail('Unavailable', 'the fleet answered with an error');
      }
      if (Date.now() >= deadline) return fail('Unavailable', 'no member of the fleet leads: a majority may be down');
      await new Promise((r) => setTimeout(r, Math.min(250, 50 * (round + 1))));
    }
  }

  app.post('/v1/request', { schema: { body: EnvelopeSchema } }, async (req, reply) => {
    const env = req.body;
    const end = latency.startTimer({ type: env.type });
    let tag: Uint8Array;
    try {
      tag = fromBase64(env.tag);
      if (tag.length !== 32) throw new Error();
    } catch {
      requests.inc({ type: env.type, outcome: 'Malformed' });
      return reply.code(400).send({ error: { code: 'Malformed', message: 'tag must be 32 bytes of base64' } });
    }
    const session = await opts.sessions(req.headers.authorization, tag);
    if (!session.ok) {
      requests.inc({ type: env.type, outcome: 'Unauthorized' });
      return reply.code(401).send({ error: { code: 'Unauthorized', message: session.reason } });
    }
    // Only KE1 spends a guess, so only KE1 is limited per account.
    if (env.type === 'RecoverStart' && !limiter.take(toHex(tag))) {
      requests.inc({ type: env.type, outcome: 'RateLimited' });
      return reply.code(429).send({ error: { code: 'RateLimited', message: `at most ${opts.ke1PerTagPerDay} recovery attempts per account per day` } });
    }
    const r = await relay(env);
    end();
    const code = r.status === 200 ? 'Ok' : ((r.body as { error: { code: string } }).error.code);
    requests.inc({ type: env.type, outcome: code });
    return reply.code(r.status).send(r.body);
  });

  app.get('/v1/fleet', async (_req, reply) => {
    for (const url of opts.agents) {
      try {
        const res = await fetch(`${url}/agent/v1/fleet`, { signal: AbortSignal.timeout(5000) });
        if (res.ok) return await res.json();
      } catch {
        // try the next member
      }
    }
    return reply.code(503).send({ error: { code: 'Unavailable', message: 'no member of the fleet is reachable' } });
  });

  // The validation bundle (DESIGN section 6), relayed from a member. The request carries no user
  // data, only, optionally, the tree size of a checkpoint the client holds.
  app.get('/v1/bundle', { schema: { querystring: BundleQuerySchema } }, async (req, reply) => {
    const from = (req.query as { 'consistency-from'?: string })['consistency-from'];
    const query = from === undefined ? '' : `?consistency-from=${from}`;
    for (const url of opts.agents) {
      try {
        const res = await fetch(`${url}/agent/v1/bundle${query}`, { signal: AbortSignal.timeout(15_000) });
        if (res.status === 404) return reply.code(404).send({ error: { code: 'Unavailable', message: 'this fleet has no validation bundle yet' } });
        if (res.ok) return await res.json();
      } catch {
        // try the next member
      }
    }
    return reply.code(503).send({ error: { code: 'Unavailable', message: 'no member of the fleet is reachable' } });
  });

  // Operators: each member's view (leader, captured, persisted, committed), and its lag.
  app.get('/v1/fleet/status', async () => {
    const members = await Promise.all(
      opts.agents.map(async (url, i) => {
        try {
          const res = await fetch(`${url}/agent/v1/status`, { signal: AbortSignal.timeout(2000) });
          const s = (await res.json()) as { member?: string; leader?: boolean; captured?: { index: number } | null; persisted?: { index: number } | null; committed?: { index: number } | null; halted?: string | null };
          return { index: i, url, reachable: true, member: s.member ?? null, leader: s.leader === true, captured: s.captured?.index ?? null, persisted: s.persisted?.index ?? null, committed: s.committed?.index ?? null, halted: s.halted ?? null };
        } catch {
          return { index: i, url, reachable: false, member: null, leader: false, captured: null, persisted: null, committed: null, halted: null };
        }
      }),
    );
    const leader = members.find((m) => m.leader);
    const tip = Math.max(...members.map((m) => m.captured ?? -1));
    const lastCommitted = Math.max(...members.map((m) => m.committed ?? -1));
    return {
      members: members.map((m) => ({ ...m, lag: m.captured === null ? null : tip - m.captured })),
      leader: leader ? leader.index : null,
      lastCommitted: lastCommitted >= 0 ? lastCommitted : null,
      majority: Math.floor(opts.agents.length / 2) + 1,
      up: members.filter((m) => m.reachable && !m.halted).length,
    };
  });

  app.get('/healthz', async (_req, reply) => {
    for (const url of opts.agents) {
      try {
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) return { ok: true };
      } catch {
        // try the next member
      }
    }
    return reply.code(503).send({ ok: false });
  });

  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  app.get('/openapi.json', async () => openApiDocument());
  return app;
}
