/** Progress reporting and cancellation shared by create, restore and verify. */
import { BackupError } from './errors.js';

export interface Progress {
  /** Plaintext bytes of file content processed so far. */
  readonly bytesDone: number;
  /** Plaintext bytes the whole operation will process. */
  readonly bytesTotal: number;
}

export type ProgressCallback = (p: Progress) => void;

/** Throws `Aborted` if the signal fired; checked once per chunk so cancellation is prompt. */
export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new BackupError('Aborted', 'the operation was cancelled');
}
