/**
 * Tape names, formatted and read in one place. A name is what a reader sorts
 * and looks for before opening a tape; the label inside is what counts.
 *
 *   jship-SSSSSS-FFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLL[-eG].tar.zst   updates FIRST..LAST
 *   jship-SSSSSS-FFFFFFFFFFFFFFFF[-eG].tar.zst                    an object whose last record was not known when its upload began
 *   jship-SSSSSS-base-IIIIIIIIIIIIIIII[-eG].tar.zst               base records only
 *   jship-SSSSSS-empty[-eG].tar.zst                               nothing (export --allow-empty)
 *   jship-link-…, jship-SSSSSS-partial[-eG].tar.zst              as a replica stores link tapes and damaged tapes
 *
 * S is the serial in its chain (6 digits or more), F/L/I are sequence
 * numbers in 16 decimal digits (sorting holds up to 10^16 records:
 * DECISIONS says why not hex), `-eG` the epoch from 2 on (each epoch numbers
 * its chains from 1).
 */

const serialText = (serial: number): string => String(serial).padStart(6, '0');
const seqText = (seq: bigint): string => seq.toString().padStart(16, '0');
/** Tapes of a later epoch end their names in `-eGENERATION`. */
const epochSuffix = (generation: number): string => (generation > 1 ? `-e${generation}` : '');

/** A name as the tape chain's writer gives it: by its updates, else its base, else empty. */
export function tapeName(serial: number, updates: { firstSeq: bigint; lastSeq: bigint } | null, baseId: bigint | null, generation = 1): string {
  if (updates) return tapeFileName(serial, updates.firstSeq, updates.lastSeq, generation);
  return `jship-${serialText(serial)}-${baseId !== null ? `base-${seqText(baseId)}` : 'empty'}${epochSuffix(generation)}.tar.zst`;
}

/** By serial and sequence numbers (`lastSeq` null: an object named when its upload starts). */
export function tapeFileName(serial: number, firstSeq: bigint, lastSeq: bigint | null, generation = 1): string {
  return `jship-${serialText(serial)}-${seqText(firstSeq)}${lastSeq === null ? '' : `-${seqText(lastSeq)}`}${epochSuffix(generation)}.tar.zst`;
}

/** How a replica stores a tape: a link tape's name says so; a damaged one is named `partial`. */
export function storedTapeName(t: { link: boolean; partial: boolean; serial: number; generation: number; name: string }): string {
  if (t.partial) return `jship-${t.link ? 'link-' : ''}${serialText(t.serial)}-partial${epochSuffix(t.generation)}.tar.zst`;
  return t.link ? `jship-link-${t.name.slice('jship-'.length)}` : t.name;
}

/** The start every name of tape `serial` shares, whatever its sequence numbers and epoch (to find leftovers of it). */
export function serialPrefix(serial: number): string {
  return `jship-${serialText(serial)}-`;
}

/** Any name a tape of the tape chain is written under (not hidden `.partial` files, not other files). */
export const TAPE_NAME = /^jship-(\d{6,})(-[0-9a-z-]+)?\.tar\.zst$/;

/** The epoch a tape's name says it is of (`-eG` before `.tar.zst`; 1 without). */
export function nameGeneration(name: string): number {
  const m = /-e([1-9][0-9]{0,5})\.tar\.zst$/.exec(name);
  return m ? Number(m[1]) : 1;
}

/** Whether a name (a file's or an object's) is of tape `serial` of the tape chain of epoch `epoch`. */
export function isTapeNamed(name: string, t: { serial: number; epoch: number }): boolean {
  const m = TAPE_NAME.exec(name);
  return m !== null && Number(m[1]) === t.serial && nameGeneration(name) === t.epoch;
}
