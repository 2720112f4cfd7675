/** The HTTP edge's schema of a bundle request (front end and agent): at most a tree size. */
import { Type } from 'typebox';

export const BundleQuerySchema = Type.Object(
  { 'consistency-from': Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]{0,14})$' })) },
  { additionalProperties: false },
);
