import type { Command } from 'commander';
import type { S3Settings } from '../s3/s3-store.js';

export interface S3CliOptions {
  endpoint?: string;
  pathStyle?: boolean;
}

/** --endpoint and --path-style, for verbs that take s3:// URLs. Credentials come from the AWS environment, never from flags. */
export function withS3Options(cmd: Command): Command {
  return cmd
    .option('--endpoint <URL>', 'S3 endpoint of a self-hosted store, e.g. http://127.0.0.1:7480 (default: AWS_ENDPOINT_URL, else AWS)')
    .option('--path-style', 'path-style bucket URLs (the default when an endpoint is given)');
}

export function s3Settings(opts: S3CliOptions): S3Settings {
  return {
    ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}),
    ...(opts.pathStyle ? { pathStyle: true } : {}),
  };
}
