/**
 * Resolves with the signal's name at the first SIGTERM or SIGINT; a second
 * one while stopping leaves at once (the journal's recovery covers it).
 */
export function untilStopSignal(verb: string): Promise<string> {
  return new Promise<string>((resolve) => {
    const onSignal = (sig: string): void => {
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      const hard = (): void => {
        process.stderr.write(`jship ${verb}: stopping at once (the journal is recovered at the next open)\n`);
        process.exit(1);
      };
      process.once('SIGTERM', hard);
      process.once('SIGINT', hard);
      resolve(sig);
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
}

/**
 * For a verb that does one long piece of work: at SIGINT or SIGTERM, says in
 * one line what state the work is left in (`state()` is asked then) and
 * exits (130 for SIGINT, 143 for SIGTERM). Every such verb is safe to stop at
 * any point; the line says what a rerun does. Returns the uninstaller.
 */
export function onInterrupt(verb: string, state: () => string, json: boolean): () => void {
  const handler = (sig: NodeJS.Signals): void => {
    const line = `interrupted by ${sig}: ${state()}`;
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: 'INTERRUPTED', message: line, hint: 'run the same command again', details: { signal: sig } } })}\n`);
    else process.stderr.write(`jship ${verb}: ${line}\n`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
}
