/**
 * jship as a library: journal groups, their records, and the codecs shared
 * by the journal, the tapes and the link.
 */
// s3:// tape stores, for exports and imports through the library.
import './s3/register.js';

export { JshipError, isJshipError, type ErrorCode } from './core/errors.js';
export { parseSize, formatSize } from './core/sizes.js';
export { parseTime, formatTime, type Nanos } from './core/time.js';
export {
  RecordType, RECORD_SIZE, MAX_RECORD_DATA, GROUP_VOLUME, FLAG_BASE_ZERO,
  encodeRecord, decodeRecord, verifyData, hasData, dataLength, dataCrc, recordTypeName,
  type RecordHeader,
} from './core/record.js';
export { encodeMarker, decodeMarker, type MarkerPayload, type MarkerKind } from './core/marker.js';
export { parseVolumeSpec, type VolumeSpec, type ExtentSpec } from './core/volume-spec.js';
export type { GroupConfig, JournalFullPolicy } from './core/group-config.js';
export { Volume } from './volume/volume.js';
export { createGroup, type CreateGroupOptions } from './journal/group-create.js';
export { JournalGroup, type OpenGroupOptions, type WriteResult, type JournalConsumer } from './journal/journal-group.js';
export type { GroupStatus, GroupState } from './journal/group-status.js';
export { BaseRun, type BaseScope } from './journal/base-reader.js';
export type { JournalRecord } from './journal/journal-volume.js';

/** Opens a journal group for writing, as its owner: its tape chain and link secondaries decide what is purged. */
export { openSiteGroup as openGroup } from './owner/consumers.js';
export { Serving, type ServeOptions, type ServedExport, type ServingStatus } from './owner/serving.js';
export { NbdServer, type Listen, type ServerStats } from './nbd/server.js';
export { groupBackend } from './nbd/group-backend.js';
export type { NbdBackend, NbdExport } from './nbd/export.js';
export { LinkPrimary, type LinkPrimaryOptions } from './link/link-primary.js';
export { LinkReceiver, runPull, type LinkSecondaryOptions } from './link/link-secondary.js';
export { readLinkKey } from './link/link-tls.js';
export type { LinkEvent, LinkLog } from './link/primary-session.js';

// The secondary side: tapes out, tapes in, restore, and the disaster-recovery cycle.
export { exportGroup, type ExportOptions, type ExportResult } from './tape/export.js';
export { readTape, type ReadTapeOptions } from './tape/tape-reader.js';
export { verifyTapes, type TapeVerification } from './tape/verify.js';
export { registerStore, type TapeStore, type StoreSettings } from './tape/stores.js';
export { DirDestination, FileDestination, StreamDestination, type TapeDestination } from './tape/destination.js';
export { importTapes, type ImportOptions, type ImportReport } from './replica/import.js';
export { restoreReplica, type RestoreOptions, type RestoreResult } from './replica/restore.js';
export { Replica } from './replica/replica.js';
export { buildTimeline } from './replica/timeline.js';
export { expireReplica } from './replica/expire.js';
export { promoteReplica, type PromoteOptions, type PromoteResult } from './replica/promote.js';
export { demoteGroup, type DemoteOptions, type DemoteResult } from './link/demote.js';
