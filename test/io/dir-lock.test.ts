import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { DirLock } from '../../src/io/dir-lock.js';
import { JournalGroup } from '../../src/journal/journal-group.js';
import { Replica } from '../../src/replica/replica.js';
import { BIN, tempDir, makeGroup, MiB, jshipJson } from '../helpers.js';
import { exportTo } from '../tape/helpers.js';
import { importTapes } from '../../src/replica/import.js';
import { openSiteGroup } from '../../src/owner/consumers.js';

describe('one writer per group', () => {
  const dir = tempDir();

  it('refuses a second opener in the same process', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const first = await JournalGroup.open(g);
    try {
      await expect(JournalGroup.open(g)).rejects.toThrowError(expect.objectContaining({ code: 'GROUP_LOCKED', message: expect.stringContaining(`process ${process.pid}`) }));
    } finally {
      await first.close();
    }
    const again = await JournalGroup.open(g);
    await again.close();
  });

  it('a group (or replica) whose close fails still lets go of its files and locks: the next open in the same process is not refused', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB, b: 1 * MiB });
    const group = await JournalGroup.open(g, { checkpointIntervalMs: 0 });
    await group.write('a', 0, Buffer.alloc(4096, 3));
    // The journal's file fails to close (EIO from close(2), as NFS may give): its handle is gone all the same.
    const close = group.journal.close.bind(group.journal);
    group.journal.close = async () => {
      await close();
      throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO' });
    };
    await expect(group.close()).rejects.toThrowError(expect.objectContaining({ code: 'EIO' }));
    // Its volumes' locks and the group's own were released: a group that failed to close held them for as
    // long as the process lived, and the same process (a server retrying) was refused its own group.
    const again = await openSiteGroup(g, { checkpointIntervalMs: 0 });
    try {
      expect((await again.read('a', 0, 4096)).every((x) => x === 3)).toBe(true);
      await exportTo(again, join(dir, 'cf-tapes'), { base: true });
    } finally {
      await again.close();
    }
    // A replica whose catalogue fails to close lets go of its lock all the same.
    await importTapes(join(dir, 'cf-replica'), [join(dir, 'cf-tapes')]);
    const replica = await Replica.open(join(dir, 'cf-replica'));
    const closeCatalog = replica.catalog.close.bind(replica.catalog);
    replica.catalog.close = () => {
      closeCatalog();
      throw Object.assign(new Error('SQLITE_IOERR: disk I/O error'), { code: 'SQLITE_IOERR' });
    };
    await expect(replica.close()).rejects.toThrowError(expect.objectContaining({ code: 'SQLITE_IOERR' }));
    await (await Replica.open(join(dir, 'cf-replica'))).close();
  });

  it('a replica in use is refused with what to do about it (a replica has no control socket to talk to); what only reads it is not refused', async () => {
    const g = await makeGroup(join(dir, 'rg'), { a: 1 * MiB });
    expect(jshipJson('mark', g, 'm1')).toExit(0);
    expect(jshipJson('export', g, '--to', join(dir, 'rg-tapes'), '--base')).toExit(0);
    const rep = join(dir, 'rg-replica');
    expect(jshipJson('import', rep, join(dir, 'rg-tapes'))).toExit(0);
    const held = await Replica.open(rep);
    try {
      const again = jshipJson('import', rep, join(dir, 'rg-tapes'));
      expect(again).toExit(1);
      expect(again.out.error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining(`process ${process.pid}`) });
      expect(again.out.error.hint).toMatch(/one jship command uses a replica at a time/);
      expect(again.out.error.hint).not.toMatch(/control socket/);
      // What only reads is not refused: monitoring (check) failed, exit 1, for as long as an import ran.
      for (const verb of ['check', 'tapes', 'timeline']) {
        const r = jshipJson(verb, rep);
        expect(r.code, `${verb}: ${JSON.stringify(r.out)}`).toBe(0);
      }
      expect(jshipJson('tapes', rep).out.tapes).toHaveLength(1);
      // With --wait, a command waits for the replica (a nightly import behind a long restore, a drill behind
      // an import), says so once on standard error, and fails only when the wait is over.
      const brief = spawnSync(process.execPath, [BIN, 'import', rep, join(dir, 'rg-tapes'), '--wait', '1s', '--json'], { encoding: 'utf8' });
      expect(brief).toExit(1);
      expect(JSON.parse(brief.stdout).error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining('still after 1 s'), hint: expect.stringContaining('--wait DURATION') });
      expect(brief.stderr).toMatch(/jship import: .* is in use by process \d+ .*; waiting up to 1 s/);
      // So do catalog --rebuild, verify --deep and promote, whose refusal names --wait too (before, an unknown option there).
      for (const args of [['catalog', rep, '--rebuild'], ['verify', '--deep', rep, '--marker', 'm1'], ['promote', rep, '--to', join(dir, 'rg-promoted')]]) {
        const r = spawnSync(process.execPath, [BIN, ...args, '--wait', '1s', '--json'], { encoding: 'utf8' });
        expect(r, args[0]).toExit(1);
        expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'GROUP_LOCKED', message: expect.stringContaining('still after 1 s') });
        expect(r.stderr).toMatch(new RegExp(`jship ${args[0]}: .* is in use by process \\d+ .*; waiting up to 1 s`));
      }
      expect(existsSync(join(dir, 'rg-promoted'))).toBe(false);
      const waiting = spawn(process.execPath, [BIN, 'restore', rep, '--target', join(dir, 'rg-out.img'), '--wait', '5m', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      waiting.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      await new Promise<void>((resolve, reject) => {
        let err = '';
        waiting.stderr.setEncoding('utf8').on('data', (d: string) => {
          err += d;
          if (/waiting up to 300 s/.test(err)) resolve();
        });
        waiting.on('exit', () => reject(new Error(`restore exited without waiting: ${err} ${out}`)));
      });
      await held.close();
      expect(await new Promise((r) => waiting.on('close', r)), out).toBe(0);
      expect(readFileSync(join(dir, 'rg-out.img')).equals(readFileSync(join(dir, 'rg', 'a.img')))).toBe(true);
    } finally {
      await held.close();
    }
  });

  it('refuses while another process owns the group, and takes over once it was killed', async () => {
    const g = await makeGroup(dir, { a: 1 * MiB });
    const script = `import { openGroup } from ${JSON.stringify(new URL('../../dist/index.js', import.meta.url).href)};
      const g = await openGroup(${JSON.stringify(g)}); await g.write('a', 0, Buffer.alloc(512, 1)); process.stdout.write('OPEN\\n'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('OPEN')) resolve(); });
      child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    try {
      await expect(JournalGroup.open(g)).rejects.toThrowError(expect.objectContaining({ code: 'GROUP_LOCKED', message: expect.stringContaining(`process ${child.pid}`) }));
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
    }
    const group = await JournalGroup.open(g);
    const recs = [];
    for await (const r of group.records()) recs.push(r.header.seq);
    expect(recs).toEqual([1n]);
    await group.close();
  });
});

describe('an owner killed and not yet reaped', () => {
  const dir = tempDir();

  it('is dead: its lock is taken over while it is a zombie (its parent has not waited for it)', async () => {
    const lock = join(dir, 'lock');
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `
      import { DirLock } from ${JSON.stringify(new URL('../../dist/io/dir-lock.js', import.meta.url).href)};
      await DirLock.acquire(${JSON.stringify(lock)}, 'the test lock');
      process.stdout.write('HELD\\n');
      setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on('data', (d: Buffer) => { if (d.toString().includes('HELD')) resolve(); });
      holder.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    // Killed; this process does not reap it while spawnSync blocks its event loop, so it stays a zombie
    // (a parent script that kills without waiting, a supervisor slow to reap). The contender waits for the
    // zombie state itself, then asks for the lock.
    holder.kill('SIGKILL');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
      import { readFileSync } from 'node:fs';
      import { DirLock } from ${JSON.stringify(new URL('../../dist/io/dir-lock.js', import.meta.url).href)};
      const state = () => readFileSync('/proc/${holder.pid}/stat', 'utf8').split(') ')[1].split(' ')[0];
      while (state() !== 'Z') await new Promise((r) => setTimeout(r, 10));
      const got = await DirLock.acquire(${JSON.stringify(lock)}, 'the test lock').then(() => 'taken', (e) => e.code + ': ' + e.message);
      process.stdout.write(state() + ' ' + got);`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout, r.stderr).toBe('Z taken');
    await new Promise((resolve) => { if (holder.exitCode !== null || holder.signalCode !== null) resolve(null); else holder.on('exit', resolve); });
  });
});

describe('the owner lock under a race', () => {
  const dir = tempDir();

  it('four processes acquiring at once, over a stale lock each round: never two holders', async () => {
    const lock = join(dir, 'lock');
    const log = join(dir, 'log');
    const child = `
      import { appendFileSync } from 'node:fs';
      import { createInterface } from 'node:readline';
      import { DirLock } from ${JSON.stringify(new URL('../../dist/io/dir-lock.js', import.meta.url).href)};
      for await (const line of createInterface({ input: process.stdin })) {
        try {
          const l = await DirLock.acquire(${JSON.stringify(lock)}, 'test', { waitMs: 0 });
          appendFileSync(${JSON.stringify(log)}, 'E ' + process.pid + '\\n');
          await new Promise((r) => setTimeout(r, 3));
          appendFileSync(${JSON.stringify(log)}, 'X ' + process.pid + '\\n');
          await l.release();
        } catch (e) {
          if (e.code !== 'GROUP_LOCKED') throw e;
        }
        process.stdout.write('done ' + line + '\\n');
      }`;
    const kids = Array.from({ length: 4 }, () => spawn(process.execPath, ['--input-type=module', '-e', child], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const lines = kids.map((k) => createInterface({ input: k.stdout! })[Symbol.asyncIterator]());
    try {
      for (let round = 0; round < 40; round++) {
        // A stale lock: half written by a process that died (empty), or naming a dead process.
        writeFileSync(lock, round % 2 === 0 ? '' : JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), start: '1', since: 'x' }));
        for (const k of kids) k.stdin!.write(`${round}\n`);
        for (const l of lines) expect((await l.next()).value).toBe(`done ${round}`);
      }
    } finally {
      for (const k of kids) k.stdin!.end();
      await Promise.all(kids.map((k) => new Promise((r) => k.on('exit', r))));
    }
    const events = readFileSync(log, 'utf8').trim().split('\n');
    expect(events.length).toBeGreaterThanOrEqual(80);
    for (let i = 0; i < events.length; i += 2) {
      const [e, pid] = events[i]!.split(' ');
      expect(e, `event ${i}: ${events.slice(i, i + 3).join(', ')}`).toBe('E');
      expect(events[i + 1], `event ${i + 1}: another process entered while ${pid} held the lock`).toBe(`X ${pid}`);
    }
    expect(readdirSync(dir).filter((n) => n.startsWith('lock.'))).toEqual([]);
  });
});

describe('an owner that yields', () => {
  const dir = tempDir();

  it('takes no turn while another process waits: the waiter goes first; a dead waiter\'s ask is ignored and removed', async () => {
    const lock = join(dir, 'lock');
    const asks = (): string[] => readdirSync(dir).filter((n) => n.startsWith('lock.want'));
    // The link receiver's pattern: it lets go between two tapes and takes the lock again at once.
    let owner = await DirLock.acquire(lock, 'replica', { yields: true });
    const order: string[] = [];
    const waiting = DirLock.acquire(lock, 'replica').then(async (l) => {
      order.push('waiter');
      await l.release();
    });
    while (asks().length === 0) await new Promise((r) => setTimeout(r, 5));
    await owner.release();
    for (;;) {
      try {
        owner = await DirLock.acquire(lock, 'replica', { yields: true });
        break;
      } catch (e) {
        expect(e).toMatchObject({ code: 'GROUP_LOCKED' }); // the waiter asks, or holds it
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    order.push('owner');
    await owner.release();
    await waiting;
    // Before, the owner took the lock straight back and the waiter came after it.
    expect(order).toEqual(['waiter', 'owner']);
    expect(readdirSync(dir).filter((n) => n.startsWith('lock'))).toEqual([]);
    // An ask left by a waiter that was killed holds nobody back, and goes.
    writeFileSync(join(dir, 'lock.want-dead'), JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), start: '1', since: 'x' }));
    await (await DirLock.acquire(lock, 'replica', { yields: true })).release();
    expect(readdirSync(dir)).toEqual([]);
    // A waiter on another host cannot be checked: its ask holds the owner back while it is renewed, and not once
    // it has not been for 10 s (it is left in place: only its writer or a check of its process removes an ask).
    const far = join(dir, 'lock.want-far');
    writeFileSync(far, JSON.stringify({ pid: 1, host: `not-${hostname()}`, start: '1', since: 'x' }));
    await expect(DirLock.acquire(lock, 'replica', { yields: true })).rejects.toMatchObject({ code: 'GROUP_LOCKED' });
    const old = new Date(Date.now() - 11_000);
    utimesSync(far, old, old);
    await (await DirLock.acquire(lock, 'replica', { yields: true })).release();
    expect(readdirSync(dir)).toEqual(['lock.want-far']);
    rmSync(far);
  });
});

describe('what a contender killed midway left', () => {
  const dir = tempDir();

  it('its lock file written under a name of its own goes at the next acquire; a live or far contender\'s stays', async () => {
    const lock = join(dir, 'lock');
    // A process that has ended: its pid names nobody any more (a pid above the kernel's limit never runs).
    const dead = { pid: 2 ** 22 + 1, host: hostname(), start: '1', since: 'x' };
    writeFileSync(join(dir, 'lock.4194305-0badf00d'), JSON.stringify(dead));
    // Killed right after it created its file: nothing in it, and old.
    writeFileSync(join(dir, 'lock.4194306-00000001'), '');
    utimesSync(join(dir, 'lock.4194306-00000001'), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    // A live contender's (this process), one just created and not yet written, one on another host, and a
    // file that only looks alike: all stay.
    const live = `lock.${process.pid}-0000beef`;
    writeFileSync(join(dir, live), JSON.stringify({ pid: process.pid, host: hostname(), start: '', since: 'x' }));
    writeFileSync(join(dir, 'lock.4194307-00000002'), '');
    writeFileSync(join(dir, 'lock.4194308-00000003'), JSON.stringify({ ...dead, pid: 4194308, host: `not-${hostname()}` }));
    writeFileSync(join(dir, 'lock.notes'), 'x');
    // Before, each stayed for ever: a group or replica directory killed often enough filled with them.
    await (await DirLock.acquire(lock, 'group')).release();
    expect(readdirSync(dir).sort()).toEqual([live, 'lock.4194307-00000002', 'lock.4194308-00000003', 'lock.notes'].sort());
  });
});

