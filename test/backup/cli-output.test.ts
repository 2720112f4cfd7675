/** The CLI's backup output helpers: the progress bar and the exit-code mapping. */
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { BACKUP_ERROR_CODES } from '../../src/backup/errors.js';
import { backupExitCodeOf, EXIT, EXIT_CODES_HELP } from '../../src/cli/exit-codes.js';
import { formatBytes, progressReporter } from '../../src/cli/progress-bar.js';

/** A stream that says it is a terminal, and keeps what was written. */
function fakeTty(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough();
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString()));
  Object.assign(s, { isTTY, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
  return { stream: s as unknown as NodeJS.WriteStream, text: () => out };
}

describe('progress bar', () => {
  it('on a terminal shows bytes, rate and ETA', () => {
    const tty = fakeTty(true);
    let t = 0;
    const bar = progressReporter('backup', { stream: tty.stream, now: () => t });
    bar.update({ bytesDone: 0, bytesTotal: 100 * 1024 * 1024 });
    t = 2000;
    bar.update({ bytesDone: 50 * 1024 * 1024, bytesTotal: 100 * 1024 * 1024 });
    bar.stop();
    bar.stop();
    expect(tty.text()).toMatch(/backup .*50% \| 50\.0 MiB \/ 100\.0 MiB \| 25\.0 MiB\/s \| ETA/);
  });

  it('prints nothing when not a terminal, or with --quiet', () => {
    for (const [isTTY, quiet] of [[false, false], [true, true]] as const) {
      const tty = fakeTty(isTTY);
      const bar = progressReporter('backup', { stream: tty.stream, quiet });
      bar.update({ bytesDone: 1, bytesTotal: 2 });
      bar.update({ bytesDone: 2, bytesTotal: 2 });
      bar.stop();
      expect(tty.text()).toBe('');
    }
  });

  it('formats sizes in binary units', () => {
    expect([0, 1023, 1536, 5 * 1024 ** 3].map(formatBytes)).toEqual(['0 B', '1023 B', '1.5 KiB', '5.0 GiB']);
  });
});

describe('exit codes for backup errors', () => {
  it('every code maps to a documented exit code; the vault codes keep their meanings', () => {
    for (const code of BACKUP_ERROR_CODES) {
      const exit = backupExitCodeOf(code);
      expect(EXIT_CODES_HELP, code).toMatch(new RegExp(`^  ${exit} `, 'm'));
    }
    expect(backupExitCodeOf('WrongKey')).toBe(8);
    expect(backupExitCodeOf('Tampered')).toBe(9);
    expect(backupExitCodeOf('Exists')).toBe(10);
    expect(backupExitCodeOf('BadRecoveryCode')).toBe(EXIT.usage);
    expect([EXIT.wrongPassword, EXIT.locked, EXIT.notRegistered, EXIT.unavailable, EXIT.trust]).toEqual([3, 4, 5, 6, 7]);
  });
});
