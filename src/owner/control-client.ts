import { connect } from 'node:net';
import { JshipError, isJshipError, type ErrorCode } from '../core/errors.js';
import { LineSplitter, decodeControl, encodeControl } from './control-codec.js';
import { controlSocketPath } from './control-server.js';

/**
 * Sends one operation to the process that owns a group (a running `jship
 * serve`) and waits for its result. `locked` is the error that sent us here:
 * when no owner answers on the control socket, it is what the user sees.
 */
export async function callOwner(
  dir: string,
  op: string,
  args: Record<string, unknown>,
  locked: JshipError,
  onProgress?: (done: number, total: number) => void,
): Promise<unknown> {
  const path = await controlSocketPath(dir);
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const lines = new LineSplitter();
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      fn();
    };
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(encodeControl({ op, args })));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // No command answers for the group: one that holds it without answering (a library process) does.
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') settle(() => reject(heldByOneShot(locked)));
      else settle(() => reject(new JshipError('OWNER_UNREACHABLE', `the owner of ${dir} did not answer on ${path}: ${e.message}`, { hint: 'check that jship serve is running', cause: e })));
    });
    socket.on('close', () => settle(() => reject(new JshipError('OWNER_UNREACHABLE', `the owner of ${dir} closed its control socket without an answer`, {
      hint: 'it may have stopped in the middle: check its log, then run the command again',
    }))));
    socket.on('data', (chunk: string) => {
      try {
        for (const line of lines.push(chunk)) {
          const m = decodeControl(line) as { type?: string; done?: number; total?: number; result?: unknown; code?: string; message?: string; hint?: string; details?: unknown };
          if (m.type === 'progress') onProgress?.(m.done ?? 0, m.total ?? 0);
          else if (m.type === 'result') settle(() => resolve(m.result));
          else if (m.type === 'error' && m.code === 'GROUP_LOCKED' && (m.details as { oneShot?: unknown } | undefined)?.oneShot === true) {
            // A one-shot command holds the group: it answers status, and refuses the rest as the lock did.
            settle(() => reject(heldByOneShot(locked)));
          } else if (m.type === 'error') {
            settle(() => reject(new JshipError((m.code ?? 'IO') as ErrorCode, m.message ?? 'the owner refused', {
              ...(m.hint ? { hint: m.hint } : {}),
              ...(m.details !== null && typeof m.details === 'object' ? { details: m.details as Record<string, string | number | bigint | boolean | null> } : {}),
            })));
          }
        }
      } catch (e) {
        settle(() => reject(e));
      }
    });
  });
}

/** The refusal of a group that a one-shot command (an export, a scan) holds: it answers status and nothing else. */
function heldByOneShot(locked: JshipError): JshipError {
  return new JshipError('GROUP_LOCKED', locked.message, {
    hint: 'that process is a one-shot command (an export, a scan, …), which answers status and check only: run this again once it has ended. While jship serve owns a group, commands go through it instead',
    details: { ...locked.details, oneShot: true },
  });
}

/** What holds a group, as its control socket says. */
export type Holder = { kind: 'server'; status: { serve?: { listening: string } | null } } | { kind: 'one-shot' } | { kind: 'silent' };

/**
 * What holds a group that refused us (`locked`), asked on its control
 * socket: a server (and its status), a one-shot command (an export, a scan:
 * it ends), or a process that does not answer (a library's).
 */
async function askHolder(dir: string, locked: JshipError): Promise<Holder> {
  let status: { oneShot?: boolean; serve?: { listening: string } | null };
  try {
    status = (await callOwner(dir, 'status', {}, locked)) as typeof status;
  } catch (e) {
    if (isJshipError(e, 'GROUP_LOCKED')) return { kind: 'silent' };
    throw e;
  }
  return status.oneShot === true ? { kind: 'one-shot' } : { kind: 'server', status };
}

/**
 * askHolder, asked again and again by one waiter. A one-shot command on its
 * way out closes its control socket (a connection made meanwhile ends
 * unanswered) before it lets go of the lock: the process last seen answering
 * as a one-shot, still holding the lock (`locked.details`), is still that
 * command, not a silent holder. Undefined: the owner could not be asked.
 */
export class HolderWatch {
  #oneShot: string | undefined;

  async ask(dir: string, locked: JshipError): Promise<Holder | undefined> {
    return this.judge(locked, await askHolder(dir, locked).catch(() => undefined));
  }

  /** What to take the holder `locked` names for, given what its control socket answered (undefined: nothing). */
  judge(locked: JshipError, holder: Holder | undefined): Holder | undefined {
    const who = `${String(locked.details.pid)}@${String(locked.details.host)}`;
    if (holder?.kind === 'one-shot') this.#oneShot = who;
    if ((holder === undefined || holder.kind === 'silent') && this.#oneShot === who) return { kind: 'one-shot' };
    return holder;
  }
}
