/**
 * The S3 store against a real S3-compatible server on loopback (`@20minutes/s3rver`, its own
 * process): multipart staging, atomic commit, listing under a prefix, and the CLI's s3:// URLs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { deriveAgeKeyPair } from '../../src/backup/age-key.js';
import { collect } from '../../src/backup/age-stream.js';
import { createArchive, listArchives, restoreArchive, verifyArchive } from '../../src/backup/archive.js';
import { isBackupError } from '../../src/backup/errors.js';
import { MIN_PART_SIZE, parseS3Url, partSizeFor, S3Store } from '../../src/backup/s3-store.js';
import { bkv } from '../helpers/dev.js';
import { startS3rver, type S3Server } from '../helpers/s3rver.js';
import { chunks, pattern, tempDir } from './helpers.js';

let server: S3Server;
let client: S3Client;
let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('bkv-s3-'));
  server = await startS3rver(join(dir, 's3'), ['bkv']);
  client = new S3Client({
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
});
afterAll(async () => {
  client?.destroy();
  await server?.stop();
  await cleanup?.();
});

const kp = deriveAgeKeyPair(new Uint8Array(32).fill(3));

async function rejectsWith(p: Promise<unknown>, code: Parameters<typeof isBackupError>[1]): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(isBackupError(e, code), String(e)).toBe(true);
}

describe('S3Store', () => {
  it('archives round-trip through multipart uploads of several parts', async () => {
    const store = new S3Store({ client, bucket: 'bkv', prefix: 'alice/phone/', partSize: MIN_PART_SIZE });
    const src = join(dir, 'src');
    mkdirSync(src);
    const big = pattern(12 * 1024 * 1024 + 123, 5); // three parts of 5 MiB, the last short
    writeFileSync(join(src, 'big.bin'), big);
    writeFileSync(join(src, 'small.txt'), 'hi\n');
    const { summary } = await createArchive([src], kp.recipient, store, { keyMode: 'recovery-code' });
    expect(await listArchives(store)).toEqual([summary]);
    const names = (await store.list()).map((o) => o.name);
    expect(names).toEqual([`${summary.id}.age`, `${summary.id}.manifest.age`, `${summary.id}.manifest.json`]);
    expect((await verifyArchive(summary.id, kp.identity, store)).files).toBe(2);
    const out = join(dir, 'out');
    await restoreArchive(summary.id, kp.identity, store, out);
    expect(readFileSync(join(out, 'src', 'big.bin')).equals(Buffer.from(big))).toBe(true);
  });

  it('a staged object is invisible until commit; a failed body leaves nothing', async () => {
    const store = new S3Store({ client, bucket: 'bkv', prefix: 'staging-test/' });
    const staged = await store.stage('a.age', chunks(pattern(1000), 100));
    expect(await store.list()).toEqual([]);
    await rejectsWith(store.get('a.age'), 'NotFound');
    await staged.commit();
    expect(await store.list()).toEqual([{ name: 'a.age', size: 1000 }]);
    expect(Buffer.from(await collect(await store.get('a.age'))).equals(Buffer.from(pattern(1000)))).toBe(true);

    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(MIN_PART_SIZE + 10); // one part goes up before the failure
      throw new Error('disk read failed');
    }
    await expect(store.stage('b.age', failing())).rejects.toThrow(/disk read failed/);
    const discarded = await store.stage('c.age', chunks(pattern(10)));
    await discarded.discard();
    expect((await store.list()).map((o) => o.name)).toEqual(['a.age']);
    await store.delete('a.age');
    await store.delete('a.age'); // deleting a missing object is not an error
    expect(await store.list()).toEqual([]);
  });

  it('a cancelled create leaves nothing listed', async () => {
    const store = new S3Store({ client, bucket: 'bkv', prefix: 'cancel/' });
    const src = join(dir, 'cancel.bin');
    writeFileSync(src, new Uint8Array(8 * 1024 * 1024));
    const ac = new AbortController();
    const p = createArchive([src], kp.recipient, store, { signal: ac.signal, onProgress: (x) => x.bytesDone > 0 && ac.abort() });
    await rejectsWith(p, 'Aborted');
    expect(await store.list()).toEqual([]);
  });

  it('lists only its own objects: not other prefixes, deeper keys or foreign names', async () => {
    for (const Key of ['mine/x.age', 'mine/deeper/y.age', 'mine/.hidden', 'other/z.age', 'mine-not/w.age']) {
      await client.send(new PutObjectCommand({ Bucket: 'bkv', Key, Body: 'x' }));
    }
    expect((await new S3Store({ client, bucket: 'bkv', prefix: 'mine/' }).list()).map((o) => o.name)).toEqual(['x.age']);
  });

  it('a missing bucket or an unreachable server is StoreFailed', async () => {
    await rejectsWith(new S3Store({ client, bucket: 'no-such-bucket' }).list(), 'StoreFailed');
    const dead = new S3Client({ endpoint: 'http://127.0.0.1:9', forcePathStyle: true, region: 'us-east-1', maxAttempts: 1, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    await rejectsWith(new S3Store({ client: dead, bucket: 'bkv' }).list(), 'StoreFailed');
    dead.destroy();
  });

  it('parses s3:// URLs and sizes parts', () => {
    expect(parseS3Url('s3://bkv')).toEqual({ bucket: 'bkv', prefix: '' });
    expect(parseS3Url('s3://bkv/')).toEqual({ bucket: 'bkv', prefix: '' });
    expect(parseS3Url('s3://my.bucket-1/a/b/')).toEqual({ bucket: 'my.bucket-1', prefix: 'a/b/' });
    for (const bad of ['s3://', 's3://B/x', 's3://bkv/a//b', 's3://bkv/../x', 'https://bkv/x', 's3://x']) {
      expect(() => parseS3Url(bad), bad).toThrow(/s3:|prefix/);
    }
    expect(() => new S3Store({ client, bucket: 'bkv', partSize: 1024 })).toThrow(/5 MiB/);
    const base = 8 * 1024 * 1024;
    expect([1, 1000, 1001, 2000, 2001, 10_000].map((n) => partSizeFor(n, base) / base)).toEqual([1, 1, 2, 2, 4, 512]);
    // 10,000 parts cover more than 8 TB, and no part passes S3's 5 GiB limit.
    let total = 0;
    for (let n = 1; n <= 10_000; n++) total += partSizeFor(n, base);
    expect(total).toBeGreaterThan(8e12);
    expect(partSizeFor(10_000, base)).toBeLessThanOrEqual(5 * 1024 ** 3);
  });
});

describe('the CLI with --store s3://', () => {
  it('creates, lists and restores through the bucket; a dead endpoint is exit 11', () => {
    const env = process.env;
    const saved = { ...env };
    try {
      // The child processes inherit these: the standard AWS variables plus BKV_S3_ENDPOINT.
      Object.assign(env, { BKV_S3_ENDPOINT: server.endpoint, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, AWS_REGION: 'us-east-1' });
      const code = join(dir, 'code.txt');
      writeFileSync(code, bkv(['recovery-code', 'new']).stdout);
      const src = join(dir, 'cli-src');
      mkdirSync(src);
      writeFileSync(join(src, 'f.txt'), 'via s3\n');
      const store = 's3://bkv/cli/test';
      const c = bkv(['backup', 'create', src, '--recovery-code-file', code, '--store', store, '--json']);
      expect(c.code, c.stderr).toBe(0);
      const { id } = JSON.parse(c.stdout) as { id: string };
      const l = bkv(['backup', 'list', '--store', store, '--recovery-code-file', code, '--json']);
      expect(JSON.parse(l.stdout)).toEqual([expect.objectContaining({ id, files: 1 })]);
      const r = bkv(['backup', 'restore', id, '--to', join(dir, 'cli-out'), '--recovery-code-file', code, '--store', store]);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(join(dir, 'cli-out', 'cli-src', 'f.txt'), 'utf8')).toBe('via s3\n');

      env.BKV_S3_ENDPOINT = 'http://127.0.0.1:9';
      env.AWS_MAX_ATTEMPTS = '1';
      const dead = bkv(['backup', 'list', '--store', store]);
      expect(dead.code).toBe(11);
      expect(dead.stderr).toMatch(/S3 listing the bucket failed/);
      expect(dead.stderr).not.toContain(server.secretAccessKey);
    } finally {
      for (const k of Object.keys(env)) if (!(k in saved)) delete env[k];
      Object.assign(env, saved);
    }
  });
});
