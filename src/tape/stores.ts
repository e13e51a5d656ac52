import { JshipError } from '../core/errors.js';
import type { TapeDestination } from './destination.js';
import type { TapeSource } from './tape-source.js';

/**
 * Tape stores named by URL scheme (`s3://BUCKET/PREFIX`): a backend
 * registers itself here (`src/s3/register.ts`), so that `tape/` writes and
 * reads tapes in a store without importing it — Litestream's
 * replica-client-per-scheme. Directories, files, drives and standard output
 * are not stores: `tape/` knows them itself.
 */
export interface TapeStore {
  /** What the store is, for messages ("object storage"). */
  readonly what: string;
  destination(url: string, settings: StoreSettings): Promise<TapeDestination>;
  /** The tapes at `url` (one tape, or every tape under a prefix), in order. */
  sources(url: string, settings: StoreSettings): Promise<TapeSource[]>;
}

/** How to reach a store: what the caller resolved (its endpoint, region and credentials); never logged, never written anywhere. */
export interface StoreSettings {
  credentials?: StoreCredentials;
  /** e.g. http://127.0.0.1:7480; default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS. */
  endpoint?: string;
  /** Path-style URLs (http://host/bucket/key), as most self-hosted stores need; default: on when an endpoint is set. */
  pathStyle?: boolean;
  region?: string;
  /** Multipart part size in bytes (at least 5 MiB); default 8 MiB. */
  partSize?: number;
}

export interface StoreCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

const STORES = new Map<string, TapeStore>();
const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//;

export function registerStore(scheme: string, store: TapeStore): void {
  STORES.set(scheme, store);
}

/** Whether `where` is a store's URL (SCHEME://…) rather than a path. */
export function isStoreUrl(where: string): boolean {
  return SCHEME.test(where);
}

/** The store that handles `where`'s scheme; refused when none registered for it. */
export function storeFor(where: string): TapeStore {
  const scheme = SCHEME.exec(where)?.[1] ?? '';
  const store = STORES.get(scheme);
  if (!store) {
    throw new JshipError('USAGE', `${where}: no tape store handles ${scheme}:// URLs`, {
      hint: STORES.size > 0 ? `tapes go to ${[...STORES.keys()].map((k) => `${k}://`).join(', ')}, a directory, a file, a drive or -` : 'tapes go to a directory, a file, a drive or -',
    });
  }
  return store;
}
