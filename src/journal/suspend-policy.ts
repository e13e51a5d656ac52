import { promises as fsp } from 'node:fs';
import type { GroupConfig } from '../core/group-config.js';
import type { MarkerPayload } from '../core/marker.js';
import { SB_CLEAN, SB_DIRTY_BITMAP, SB_SUSPENDED } from '../core/superblock.js';
import type { BaseRun } from './base-reader.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { groupPaths } from './group-files.js';
import type { JournalVolume } from './journal-volume.js';

/** What the suspend policy needs of its group. */
export interface SuspendHooks {
  dir: string;
  config: GroupConfig;
  journal: JournalVolume;
  volumeSizes: number[];
  /** Journals a marker the group writes itself (from the marker reserve). */
  mark(payload: MarkerPayload): Promise<unknown>;
  /** The group's state changed (suspended, resumed, resync complete), and why. */
  changed(why: string): void;
}

/**
 * The `suspend` journal-full policy (§0083-0086): when the journal is full
 * the group stops journaling and marks written chunks in a dirty bitmap
 * instead; once the journal is below half the nearly-full threshold it
 * journals again, and a resync base of the dirty chunks (or a full base of
 * every volume with no suspension while it ran) clears the bitmap. The
 * superblock's flags say which of these a crash left the group in.
 */
export class SuspendPolicy {
  readonly #h: SuspendHooks;
  #bitmap: DirtyBitmap | undefined;
  #suspended = false;
  #suspensions = 0;
  #suspending: Promise<void> | undefined;

  private constructor(hooks: SuspendHooks) {
    this.#h = hooks;
  }

  /** The policy as the superblock's flags left it (bitmap opened when it has one). */
  static async open(hooks: SuspendHooks, flags: number): Promise<SuspendPolicy> {
    const p = new SuspendPolicy(hooks);
    if (flags & SB_DIRTY_BITMAP) {
      p.#bitmap = await p.#openBitmap();
      p.#suspended = (flags & SB_SUSPENDED) !== 0;
    }
    return p;
  }

  /** The dirty bitmap, while the group is suspended or waits for its resync base. */
  get bitmap(): DirtyBitmap | undefined {
    return this.#bitmap;
  }

  get suspended(): boolean {
    return this.#suspended;
  }

  /** Suspensions since the group was opened: a full base heals the bitmap only if none began while it ran. */
  get suspensions(): number {
    return this.#suspensions;
  }

  async #openBitmap(): Promise<DirtyBitmap> {
    return DirtyBitmap.open(groupPaths(this.#h.dir).bitmap, this.#h.config.chunkSize, this.#h.volumeSizes);
  }

  /** Stops journaling: bitmap open and flagged durable in the superblock, then a "suspended" marker. */
  async suspend(reason: string): Promise<void> {
    if (this.#suspended) return;
    const { journal } = this.#h;
    // Concurrent writers that find the journal full wait for the same suspension: none may
    // take the bitmap path before the bitmap is open.
    this.#suspending ??= (async () => {
      this.#bitmap ??= await this.#openBitmap();
      await journal.writeSuperblock({ flags: (journal.superblock.flags & ~SB_CLEAN) | SB_SUSPENDED | SB_DIRTY_BITMAP }, true);
      this.#suspended = true;
      this.#suspensions++;
      this.#h.changed(reason);
      await this.#h.mark({ kind: 'suspended', reason });
    })().finally(() => {
      this.#suspending = undefined;
    });
    return this.#suspending;
  }

  /** Journaling resumes once the journal is below half the nearly-full threshold. */
  async tryResume(): Promise<boolean> {
    const { journal, config } = this.#h;
    const u = journal.usage();
    const percent = Math.max(u.metaFraction, u.dataFraction) * 100;
    if (percent >= config.policy.nearlyFullPercent / 2) return false;
    this.#suspended = false;
    const bitmap = this.#bitmap as DirtyBitmap;
    await journal.writeSuperblock({ flags: journal.superblock.flags & ~SB_SUSPENDED }, true);
    await this.#h.mark({ kind: 'resumed', dirtyBytes: bitmap.dirtyCount() * bitmap.chunkSize });
    this.#h.changed(`${bitmap.dirtyCount() * bitmap.chunkSize} bytes to resync`);
    return true;
  }

  /**
   * A base ended: a resync base of the whole bitmap, or a full base of all
   * `volumeCount` volumes with no suspension since `suspensionsAtStart`,
   * holds every dirty chunk; once none is left (and the group journals)
   * the bitmap is dropped.
   */
  async baseDone(run: BaseRun, ok: boolean, suspensionsAtStart: number, volumeCount: number): Promise<void> {
    const bitmap = this.#bitmap;
    const healsAll = run.scope === 'full' && run.volumes.length === volumeCount && this.#suspensions === suspensionsAtStart;
    if (!ok || !((run.scope === 'resync' && !run.listed) || healsAll) || !bitmap) return;
    await bitmap.persist();
    await bitmap.sync();
    if ((healsAll || bitmap.dirtyCount() === 0) && !this.#suspended) {
      const { journal } = this.#h;
      await journal.writeSuperblock({ flags: journal.superblock.flags & ~SB_DIRTY_BITMAP }, true);
      await bitmap.close();
      this.#bitmap = undefined;
      await fsp.rm(groupPaths(this.#h.dir).bitmap, { force: true });
      this.#h.changed(`${run.scope} base ${run.baseId} complete`);
    }
  }

  async close(): Promise<void> {
    await this.#bitmap?.close();
  }
}
