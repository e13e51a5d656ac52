import { S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { JshipError } from '../core/errors.js';
import { DirectGetHandler } from './direct-get.js';
import type { StoreCredentials, StoreSettings } from '../tape/stores.js';

/**
 * How to reach the store. Without `credentials`, the AWS SDK's default
 * chain finds them in this process's environment (AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared config and credentials
 * files, instance roles). An export sent to the group's owner carries the
 * caller's own, resolved (resolveS3Settings): the owner never lends its own.
 */
/** How to reach the store (tape/stores.ts: what every store is given). */
export type S3Settings = StoreSettings;
export type S3Credentials = StoreCredentials;

export const MIN_PART = 5 * 1024 * 1024;
export const DEFAULT_PART = 8 * 1024 * 1024;

export interface Store {
  client: S3Client;
  endpoint: string;
  partSize: number;
}

const stores = new Map<string, Promise<Store>>();

/** One client per distinct setting, made on first use. */
export function store(settings: S3Settings = {}): Promise<Store> {
  const k = JSON.stringify(settings);
  let s = stores.get(k);
  if (!s) {
    s = makeStore(settings);
    stores.set(k, s);
  }
  return s;
}

async function makeStore(settings: S3Settings): Promise<Store> {
  const endpoint = settings.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint)) {
    throw new JshipError('S3_BAD_URL', `endpoint "${endpoint}" is not an http(s) URL`, { hint: 'e.g. --endpoint http://127.0.0.1:7480' });
  }
  const partSize = settings.partSize ?? DEFAULT_PART;
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART) {
    throw new JshipError('USAGE', `part size ${partSize} is below S3's minimum of ${MIN_PART} bytes`, { hint: 'use at least 5 MiB' });
  }
  const region = settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (await profileRegion()) ?? 'us-east-1';
  const client = new S3Client({
    region,
    ...(endpoint !== undefined ? { endpoint } : {}),
    forcePathStyle: settings.pathStyle ?? endpoint !== undefined,
    // Self-hosted stores (radosgw) ignore or refuse the SDK's newer checksum headers; parts carry Content-MD5 instead.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 6,
    // Ranged GETs over http read straight into the range's buffer (direct-get.ts); the rest goes through node's HTTP client.
    requestHandler: new DirectGetHandler(new NodeHttpHandler({ connectionTimeout: 10_000, requestTimeout: 300_000 }), { connect: 10_000, idle: 300_000 }),
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
  });
  return { client, endpoint: endpoint ?? `AWS S3 (${region})`, partSize };
}

/**
 * The settings as this process's environment gives them: endpoint, region
 * and credentials (from the SDK's default chain), so that another process
 * (the group's owner) reaches the store as this caller, not as itself.
 */
export async function resolveS3Settings(settings: S3Settings): Promise<S3Settings> {
  const endpoint = settings.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const region = settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (await profileRegion()) ?? 'us-east-1';
  let credentials: S3Credentials;
  try {
    const c = await defaultProvider()();
    credentials = { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, ...(c.sessionToken ? { sessionToken: c.sessionToken } : {}) };
  } catch (e) {
    throw new JshipError('S3_ACCESS_DENIED', `no AWS credentials in this environment (${(e as Error).message})`, {
      hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, for the user running jship (the group\'s server never lends its own)',
      cause: e,
    });
  }
  return { ...settings, ...(endpoint !== undefined ? { endpoint } : {}), region, credentials };
}

/** The region of the shared config profile, if one is set there. */
async function profileRegion(): Promise<string | undefined> {
  const probe = new S3Client({});
  try {
    return await probe.config.region();
  } catch {
    return undefined;
  } finally {
    probe.destroy();
  }
}

/** Whether the store refused a conditional request (If-None-Match, If-Match): HTTP 412. */
export function isPreconditionFailed(e: unknown): boolean {
  return (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412 || (e as Error).name === 'PreconditionFailed';
}

/**
 * A store error as a JshipError naming the bucket and key: permanent ones
 * (no bucket, access denied, bad signature) say what to fix; the SDK has
 * already retried throttling and transient failures with backoff.
 */
export function s3Error(e: unknown, what: string, bucket: string, key?: string): JshipError {
  if (e instanceof JshipError) return e;
  const where = `s3://${bucket}/${key ?? ''}`;
  const name = (e as { name?: string })?.name ?? '';
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  const status = e instanceof S3ServiceException ? e.$metadata.httpStatusCode : undefined;
  const msg = (e as Error)?.message ?? String(e);
  if (name === 'NoSuchBucket') {
    return new JshipError('S3_NO_BUCKET', `${what}: bucket "${bucket}" does not exist`, { hint: 'create the bucket first, or check the bucket name and --endpoint', cause: e });
  }
  if (name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'Forbidden' || status === 403) {
    return new JshipError('S3_ACCESS_DENIED', `${what}: access to ${where} denied (${name || status})`, {
      hint: 'check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and their rights on the bucket',
      cause: e,
    });
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new JshipError('S3_NOT_FOUND', `${what}: ${where} does not exist`, { hint: 'check the key; jship tapes s3://BUCKET/PREFIX lists what is there', cause: e });
  }
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE'].includes(code) || name === 'TimeoutError' || name === 'RequestTimeout') {
    return new JshipError('S3_UNREACHABLE', `${what}: the store did not answer for ${where} (${code || name}: ${msg})`, {
      hint: 'check that the endpoint is up and reachable (--endpoint, AWS_ENDPOINT_URL); retried with backoff before giving up',
      cause: e,
    });
  }
  return new JshipError('S3_ERROR', `${what}: ${where}: ${name ? `${name}: ` : ''}${msg}`, { hint: 'the store refused the request; its message says why', cause: e });
}
