#!/usr/bin/env node
/** The `bkv` command. */
import { Command, CommanderError } from 'commander';
import { registerClientCommands } from './client-commands.js';
import { registerServeCommands } from './serve-commands.js';
import { registerDevCommand } from './dev.js';
import { registerFleetCommands } from './fleet-commands.js';
import { registerBackupCommands } from './backup-commands.js';
import { registerPublishCommands } from './publish-commands.js';
import { registerValidatorCommands } from './validator-commands.js';
import { registerAuditCommands } from './audit-commands.js';
import { EXIT, EXIT_CODES_HELP } from './exit-codes.js';
import { InputError } from './secrets.js';

const program = new Command();
program
  .name('bkv')
  .description('Backup Key Vault: protect a backup key with a password, kept by a fleet of HSMs with a hard guess limit')
  .version('0.1.0')
  .addHelpText('after', `\n${EXIT_CODES_HELP}\n\nSecrets are read from a prompt, stdin (--password-stdin) or a file (--password-file), never from arguments.`)
  .exitOverride();

registerDevCommand(program);
registerClientCommands(program);
registerServeCommands(program);
registerFleetCommands(program);
registerBackupCommands(program);
registerPublishCommands(program);
registerValidatorCommands(program);
registerAuditCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? 0 : EXIT.usage;
  } else if (e instanceof InputError) {
    process.stderr.write(`bkv: ${e.message}\n`);
    process.exitCode = EXIT.usage;
  } else {
    process.stderr.write(`bkv: ${(e as Error).message}\n`);
    process.exitCode = EXIT.internal;
  }
}
