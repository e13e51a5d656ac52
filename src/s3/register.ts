import { registerStore } from '../tape/stores.js';

/**
 * s3:// as a tape store (tape/stores.ts). Imported for its effect by the
 * entry points (the CLI, the library's index); the S3 SDK itself is loaded
 * only when a tape goes to or comes from a store (it is a quarter of the
 * CLI's start-up).
 */
registerStore('s3', {
  what: 'object storage',
  destination: async (url, settings) => new (await import('./s3-destination.js')).S3Destination(url, settings),
  sources: async (url, settings) => (await import('./s3-source.js')).s3Sources(url, settings),
});
