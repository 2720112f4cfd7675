/** JSON schemas of the HTTP edge (TypeBox): sizes are bounded before anything is decoded (I8). */
import { Type } from 'typebox';
import { MESSAGE_TYPES } from './messages.js';
import { ERROR_CODES } from './errors.js';

/**
 * Ajv options for the HTTP edge: Fastify's defaults strip unknown properties (despite
 * additionalProperties: false) and coerce types ("1" and true become 1, ["Status"] becomes
 * "Status"); the edge refuses such bodies instead (I8).
 */
export const STRICT_AJV = { customOptions: { removeAdditional: false, coerceTypes: false } } as const;

const b64 = (maxLength: number) => Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$', maxLength });

export const EnvelopeSchema = Type.Object(
  {
    v: Type.Integer({ minimum: 0, maximum: 65535 }),
    type: Type.Union(MESSAGE_TYPES.map((t) => Type.Literal(t))),
    hint: b64(4),
    tag: b64(44),
    enc: b64(44),
    ct: b64(8192),
  },
  { additionalProperties: false },
);

export const ReplySchema = Type.Object({ ct: b64(8192) });

export const ErrorSchema = Type.Object({
  error: Type.Object({ code: Type.Union(ERROR_CODES.map((c) => Type.Literal(c))), message: Type.String() }),
});
