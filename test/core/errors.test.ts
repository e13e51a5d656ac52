import { describe, expect, it } from 'vitest';
import { JshipError, asJshipError, atPath, param } from '../../src/core/errors.js';
import { cliError, flagOf } from '../../src/cli/flags.js';

describe('errors name library parameters; the CLI shows them as flags', () => {
  const e = new JshipError('USAGE', `${param('mediaSize')} 1 MiB cannot hold a record of 4 MiB`, { hint: `give a ${param('mediaSize')} of at least 5 MiB, or leave out ${param('volumes')}`, details: { need: 5 } });

  it('a caller of the library reads parameter names, and which parameters are wrong in details', () => {
    expect(e.message).toBe('mediaSize 1 MiB cannot hold a record of 4 MiB');
    expect(e.hint).toBe('give a mediaSize of at least 5 MiB, or leave out volumes');
    expect(e.toJSON().details).toEqual({ params: 'mediaSize,volumes', need: 5 });
  });

  it('the command line reads flags, the same code and details', () => {
    const c = cliError(e);
    expect(c.message).toBe('--media-size 1 MiB cannot hold a record of 4 MiB');
    expect(c.hint).toBe('give a --media-size of at least 5 MiB, or leave out --volume');
    expect(c.code).toBe('USAGE');
    expect(c.isUsage).toBe(true);
    expect(c.details).toEqual(e.details);
  });

  it('flags: kebab case, and the parameters whose flag is another word', () => {
    expect(flagOf('verifyAfterWrite')).toBe('--verify-after-write');
    expect(flagOf('to')).toBe('--to');
    expect(flagOf('targets')).toBe('--target');
    expect(flagOf('replicaDir')).toBe('--replica');
    expect(flagOf('tapes')).toBe('--follow');
  });

  it('an error without parameters passes through the CLI unchanged', () => {
    const plain = new JshipError('TAPE_FOREIGN', 'tape of group g2', { hint: 'use a new replica' });
    expect(cliError(plain)).toBe(plain);
    expect(plain.details).toEqual({});
  });

  it('the template survives the control socket (the owner sends it, the client rebuilds the error)', () => {
    const again = new JshipError(e.code, e.template.message, { ...(e.template.hint ? { hint: e.template.hint } : {}), details: e.details });
    expect(cliError(again).message).toBe('--media-size 1 MiB cannot hold a record of 4 MiB');
  });
});

describe('system errors name the file they are about', () => {
  const sys = (message: string, code: string, path?: string): NodeJS.ErrnoException => Object.assign(new Error(message), { code, ...(path !== undefined ? { path } : {}) });

  it('an error of a file handle gets the path the caller knew the file by, once', () => {
    const e = atPath(sys('ENOSPC: no space left on device, write', 'ENOSPC'), '/mnt/b.img');
    const j = asJshipError(e);
    expect(j.code).toBe('IO');
    expect(j.message).toBe('no space left on the file system: /mnt/b.img: ENOSPC: no space left on device, write');
    expect(j.hint).toMatch(/free space/);
    // Tagged again further up (a restore target inside a replica's directory): the first, nearest path stays.
    expect(asJshipError(atPath(e, '/mnt')).message).toBe(j.message);
  });

  it('an error that names its file already, and an error that is not a system error, are left as they are', () => {
    const open = atPath(sys("ENOENT: no such file or directory, open '/x/y'", 'ENOENT', '/x/y'), '/x');
    expect(asJshipError(open).message).toBe("ENOENT: no such file or directory, open '/x/y'");
    const plain = new Error('something else');
    expect(atPath(plain, '/x')).toBe(plain);
    expect((plain as { path?: string }).path).toBeUndefined();
    expect(asJshipError(plain).message).toBe('something else');
  });
});
