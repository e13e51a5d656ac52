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
