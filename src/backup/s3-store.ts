/**
 * A backup store in an S3-compatible bucket (AWS SDK v3), under an optional key prefix.
 *
 * The two-phase write of `BackupStore` maps onto multipart upload: `stage` = CreateMultipartUpload
 * + UploadPart..., `commit` = CompleteMultipartUpload (the object appears whole and at once, or
 * not at all), `discard` = AbortMultipartUpload. A writer killed mid-way leaves only an
 * incomplete upload, which no GET or LIST of objects shows; a bucket lifecycle rule
 * (AbortIncompleteMultipartUpload) reclaims its space.
 *
 * Memory stays bounded: parts are cut from the stream as it comes, and at most
 * `maxInFlightBytes` of parts (and never less than one part) are uploading at a time, beside the
 * part being filled: 40 MiB with the defaults for archives under 8 GB (see partSizeFor).
 *
 * The bucket is as untrusted as any store: it sees age ciphertext and clear summaries only.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { BackupError } from './errors.js';
import { checkObjectName, OBJECT_NAME, type BackupStore, type StagedObject, type StoredObject } from './store.js';

const MIB = 1 << 20;
/** S3's floor for every part but the last. */
export const MIN_PART_SIZE = 5 * MIB;
/** S3's ceiling on the number of parts of one upload. */
const MAX_PARTS = 10_000;
/** Parts 1..1000 have the base size, the next 1000 twice that, and so on (see partSizeFor). */
const PARTS_PER_TIER = 1000;

export interface S3StoreOptions {
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix, '' or ending in '/'. Objects are `prefix + name`. */
  readonly prefix?: string;
  /** Base part size; at least 5 MiB. Default 8 MiB. */
  readonly partSize?: number;
  /** Bytes of parts uploading at once (at least one part). Default 32 MiB. */
  readonly maxInFlightBytes?: number;
}

/**
 * The size of part `n` (1-based). The archive's length is not known in advance, so the part size
 * doubles every 1000 parts: 8 MiB parts cover 8 GiB, the 10,000-part limit is reached only
 * past 8 TB (the last parts are 4 GiB, under S3's 5 GiB), and small archives never hold more
 * than one small part in memory.
 */
export function partSizeFor(n: number, base: number): number {
  return base * 2 ** Math.floor((n - 1) / PARTS_PER_TIER);
}

/** Parses `s3://bucket/prefix` into a bucket and a prefix ('' or ending in '/'). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (m === null) throw new BackupError('BadArgument', `not an s3://bucket/prefix URL: ${JSON.stringify(url.slice(0, 200))}`);
  let prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix.split('/').some((c) => c === '' || c === '.' || c === '..') && prefix !== '') {
    throw new BackupError('BadArgument', 'the S3 prefix has an empty, "." or ".." component');
  }
  if (prefix !== '') prefix += '/';
  return { bucket: m[1]!, prefix };
}

function isNotFound(e: unknown): boolean {
  return e instanceof S3ServiceException && (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata.httpStatusCode === 404);
}

/** S3 and network errors as `StoreFailed`; their messages name the failure, never credentials. */
function storeFailed(what: string, e: unknown): BackupError {
  if (e instanceof BackupError) return e;
  const detail = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new BackupError('StoreFailed', `S3 ${what} failed (${detail})`, { cause: e });
}

export class S3Store implements BackupStore {
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly partSize: number;
  private readonly maxInFlightBytes: number;

  constructor(options: S3StoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    if (this.prefix !== '' && !this.prefix.endsWith('/')) throw new BackupError('BadArgument', 'an S3 prefix ends with "/"');
    this.partSize = options.partSize ?? 8 * MIB;
    if (this.partSize < MIN_PART_SIZE) throw new BackupError('BadArgument', 'S3 parts are at least 5 MiB');
    this.maxInFlightBytes = options.maxInFlightBytes ?? 32 * MIB;
  }

  private key(name: string): string {
    checkObjectName(name);
    return this.prefix + name;
  }

  async stage(name: string, body: AsyncIterable<Uint8Array>): Promise<StagedObject> {
    const Key = this.key(name);
    const { Bucket, client } = { Bucket: this.bucket, client: this.client };
    let uploadId: string | undefined;
    try {
      uploadId = (await client.send(new CreateMultipartUploadCommand({ Bucket, Key }))).UploadId;
    } catch (e) {
      throw storeFailed(`starting the upload of ${name}`, e);
    }
    if (uploadId === undefined) throw new BackupError('StoreFailed', 'S3 returned no upload id');
    const UploadId = uploadId;
    const abort = (): Promise<void> =>
      client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).then(
        () => undefined,
        () => undefined, // Best effort: an upload left behind is invisible and expires by lifecycle rule.
      );

    let parts: CompletedPart[];
    let size: number;
    try {
      ({ parts, size } = await this.uploadParts(Key, UploadId, body));
    } catch (e) {
      await abort();
      throw storeFailed(`uploading ${name}`, e);
    }
    return {
      name,
      size,
      async commit() {
        try {
          await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
        } catch (e) {
          throw storeFailed(`completing the upload of ${name}`, e);
        }
      },
      discard: abort,
    };
  }

  /**
   * Cuts `body` into parts and uploads them, several at a time. Each part is copied once, into
   * its own buffer, because the SDK holds it until the request ends.
   */
  private async uploadParts(Key: string, UploadId: string, body: AsyncIterable<Uint8Array>): Promise<{ parts: CompletedPart[]; size: number }> {
    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let inFlightBytes = 0;
    let failure: { error: unknown } | undefined;
    let size = 0;
    let partNumber = 1;
    let buf = Buffer.allocUnsafe(partSizeFor(partNumber, this.partSize));
    let fill = 0;

    const send = async (bytes: Buffer, n: number): Promise<void> => {
      while (inFlight.size > 0 && inFlightBytes + bytes.length > this.maxInFlightBytes) await Promise.race(inFlight);
      if (failure) throw failure.error;
      inFlightBytes += bytes.length;
      const p: Promise<void> = this.client
        .send(new UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber: n, Body: bytes, ContentLength: bytes.length }))
        .then(
          (r) => void (parts[n - 1] = { PartNumber: n, ETag: r.ETag }),
          (e: unknown) => void (failure ??= { error: e }),
        )
        .finally(() => {
          inFlight.delete(p);
          inFlightBytes -= bytes.length;
        });
      inFlight.add(p);
    };

    try {
      for await (const piece of body) {
        let off = 0;
        while (off < piece.length) {
          const n = Math.min(buf.length - fill, piece.length - off);
          buf.set(piece.subarray(off, off + n), fill);
          fill += n;
          off += n;
          if (fill === buf.length) {
            // A full part is sent now; the last part (possibly short) is sent after the loop.
            if (partNumber >= MAX_PARTS) throw new BackupError('StoreFailed', 'the archive exceeds the S3 multipart limit of 10,000 parts');
            await send(buf, partNumber++);
            buf = Buffer.allocUnsafe(partSizeFor(partNumber, this.partSize));
            fill = 0;
          }
        }
        size += piece.length;
      }
      // S3 needs at least one part; the last may be short (or empty when it is the only one).
      if (fill > 0 || partNumber === 1) await send(buf.subarray(0, fill), partNumber);
      await Promise.all(inFlight);
    } finally {
      // On any error, let uploads in flight settle before the caller aborts the upload.
      await Promise.allSettled(inFlight);
    }
    if (failure) throw failure.error;
    return { parts, size };
  }

  async get(name: string): Promise<AsyncIterable<Uint8Array>> {
    const Key = this.key(name);
    let body: unknown;
    try {
      body = (await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }))).Body;
    } catch (e) {
      if (isNotFound(e)) throw new BackupError('NotFound', `no object ${name} in the store`);
      throw storeFailed(`reading ${name}`, e);
    }
    if (!isAsyncIterable(body)) throw new BackupError('StoreFailed', `S3 returned no readable body for ${name}`);
    return readAll(body, name);
  }

  async list(): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, ContinuationToken: token }));
      } catch (e) {
        throw storeFailed('listing the bucket', e);
      }
      for (const o of page.Contents ?? []) {
        const name = o.Key?.slice(this.prefix.length) ?? '';
        // Keys below a deeper "folder" or with other names are not this store's objects.
        if (OBJECT_NAME.test(name)) out.push({ name, size: o.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<void> {
    const Key = this.key(name);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (e) {
      if (!isNotFound(e)) throw storeFailed(`deleting ${name}`, e);
    }
  }
}

function isAsyncIterable(v: unknown): v is AsyncIterable<Uint8Array> {
  return typeof v === 'object' && v !== null && typeof (v as Partial<AsyncIterable<Uint8Array>>)[Symbol.asyncIterator] === 'function';
}

/** The response body, with a dropped connection reported as a store failure. */
async function* readAll(body: AsyncIterable<Uint8Array>, name: string): AsyncGenerator<Uint8Array> {
  try {
    yield* body;
  } catch (e) {
    throw storeFailed(`reading ${name}`, e);
  }
}
