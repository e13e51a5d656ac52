import { JshipError } from '../core/errors.js';
import { reportError } from './output.js';

/**
 * Makes a verb that stopped with its work unfinished fail: when the process
 * is about to end as a success while the verb still awaits something (the
 * event loop emptied under it: a bug, such as a thread let go of while its
 * answer was awaited), it says so and exits 1, where it ended 0 having said
 * nothing. An exit chosen on purpose (a signal's 130 or 143, an error's 1)
 * keeps its code. Returns what the verb calls once its work has settled.
 */
export function failIfUnfinished(json: boolean): () => void {
  const onExit = (code: number): void => {
    if (code !== 0) return;
    reportError(new JshipError('INTERNAL', 'jship stopped before its work was done: an operation it waited for never completed, so nothing it was doing can be taken as done', {
      hint: 'this is a bug in jship: run the same command again (every verb is safe to rerun), and report it with the output of JSHIP_DEBUG=1',
    }), json);
  };
  process.once('exit', onExit);
  return () => {
    process.removeListener('exit', onExit);
  };
}
