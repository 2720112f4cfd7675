/** Reading secrets: from a prompt, stdin or a file, never from argv. */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

export class InputError extends Error {}

let stdinLines: Promise<string[]> | undefined;

/** All of stdin, split into lines (read once; later calls take the next line). */
function readStdinLines(): Promise<string[]> {
  stdinLines ??= new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 64 * 1024) reject(new InputError('stdin is too large for a password'));
      chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8').split(/\r?\n/)));
    process.stdin.on('error', reject);
  });
  return stdinLines;
}

let stdinCursor = 0;

async function nextStdinLine(what: string): Promise<string> {
  const lines = await readStdinLines();
  const line = lines[stdinCursor++];
  if (line === undefined || line.length === 0) throw new InputError(`expected the ${what} on line ${stdinCursor} of stdin`);
  return line;
}

async function prompt(question: string): Promise<string> {
  if (!process.stdin.isTTY) throw new InputError(`no ${question.replace(/: $/, '')} given: use --password-stdin or --password-file, or run on a terminal`);
  let muted = false;
  const out = new Writable({
    write(chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output: out, terminal: true });
  process.stderr.write(question);
  muted = true;
  const answer = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return answer;
}

export interface SecretSource {
  stdin?: boolean;
  file?: string;
}

/** A secret from `--X-stdin`, `--X-file F` or an interactive prompt, in that order. */
export async function readSecret(src: SecretSource, what: string): Promise<string> {
  if (src.stdin) return nextStdinLine(what);
  if (src.file) {
    let text: string;
    try {
      text = readFileSync(src.file, 'utf8');
    } catch {
      throw new InputError(`cannot read the ${what} file`);
    }
    const line = text.split(/\r?\n/)[0] ?? '';
    if (line.length === 0) throw new InputError(`the ${what} file is empty`);
    return line;
  }
  return prompt(`${what}: `);
}
