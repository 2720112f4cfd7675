/**
 * Transparency-log formats: RFC 6962/9162 Merkle proofs and the C2SP signed-note,
 * tlog-checkpoint, tlog-cosignature, tlog-tiles and tlog-proof formats. The validator, the audit
 * tool and the client build on these; nothing here does I/O.
 */
export * from './errors.js';
export * from './merkle.js';
export * from './note.js';
export * from './checkpoint.js';
export * from './tiles.js';
export * from './proof.js';
export * from './remote.js';
