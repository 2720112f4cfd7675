/**
 * A local S3-compatible server for tests: `@20minutes/s3rver` (a maintained fork of s3rver) in
 * its own process, so that CLI tests that block on spawnSync do not block the server too.
 *
 * It runs with allowMismatchedSignatures: s3rver canonicalises a bucket-level path as "/bkv" where
 * current SDKs sign "/bkv/", so every ListObjectsV2 would fail SigV4 checking. The access key is
 * still checked; what is tested is our use of the S3 API, not SigV4 (the SDK's job).
 */
import { spawn } from 'node:child_process';

export interface S3Server {
  endpoint: string;
  /** s3rver's fixed test credentials. */
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

const SCRIPT = `
const S3rver = require('@20minutes/s3rver');
const [dir, ...buckets] = process.argv.slice(1);
const server = new S3rver({ port: 0, address: '127.0.0.1', directory: dir, silent: true,
  allowMismatchedSignatures: true, configureBuckets: buckets.map((name) => ({ name })) });
server.run().then((a) => process.stdout.write(JSON.stringify({ port: a.port }) + '\\n'));
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
`;

export async function startS3rver(dir: string, buckets: string[]): Promise<S3Server> {
  const child = spawn(process.execPath, ['-e', SCRIPT, dir, ...buckets], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`s3rver did not start: ${out}`)), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(Number(m[1]));
      }
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`s3rver exited with ${code}: ${out}`));
    });
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    stop: () =>
      new Promise<void>((ok) => {
        if (child.exitCode !== null) return ok();
        child.once('exit', () => ok());
        child.kill('SIGTERM');
      }),
  };
}
