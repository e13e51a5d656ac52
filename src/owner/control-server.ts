import type { EventLog } from '../core/events.js';
import { createServer, type Server, type Socket } from 'node:net';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { fitsSocketPath, listenOn } from '../io/sockets.js';
import { JshipError } from '../core/errors.js';
import { LineSplitter, asRequest, decodeControl, encodeControl, type ControlReply } from './control-codec.js';

export const CONTROL_SOCKET = 'control.sock';
/** Written when the group directory's path is too long for a socket: where the control socket is instead. */
export const CONTROL_POINTER = 'control.path';

/** A handler runs one operation in the owning process; it may report progress. */
export type ControlHandler = (args: Record<string, unknown>, progress: (done: number, total: number) => void) => Promise<unknown>;

/** Where the owner of a group listens: GROUP_DIR/control.sock, or where GROUP_DIR/control.path says. */
export async function controlSocketPath(dir: string): Promise<string> {
  const pointer = await fsp.readFile(join(dir, CONTROL_POINTER), 'utf8').catch(() => undefined);
  return pointer?.trim() || join(dir, CONTROL_SOCKET);
}

/**
 * The control socket of a group's owner (GROUP_DIR/control.sock, mode 0600:
 * file permissions are the access control). One request per connection;
 * replies are progress lines, then one result or error line. Operations are
 * the owner's own (mark, status, export, ack): the CLI verbs send them here
 * when the group is locked by a running server.
 */
export class ControlServer {
  readonly #server: Server;
  readonly #handlers: Map<string, ControlHandler>;
  readonly #sockets = new Set<Socket>();
  readonly #running = new Set<Promise<unknown>>();
  #path = '';
  #pointer = '';

  readonly #fallback: ControlHandler | undefined;

  /** `fallback` answers the operations `handlers` has none for (else they are refused as unknown). */
  constructor(handlers: Record<string, ControlHandler>, readonly log: EventLog, fallback?: ControlHandler) {
    this.#handlers = new Map(Object.entries(handlers));
    this.#fallback = fallback;
    this.#server = createServer((s) => this.#accept(s));
  }

  async listen(dir: string, groupId: string): Promise<string> {
    let path = join(dir, CONTROL_SOCKET);
    const pointer = join(dir, CONTROL_POINTER);
    // The group lock is held: socket and pointer files here are leftovers of a dead owner.
    await fsp.rm(pointer, { force: true });
    if (!fitsSocketPath(path)) {
      // Too long for a Unix socket: listen in the temporary directory and say where in the group directory.
      path = join(tmpdir(), `jship-${groupId}.control.sock`);
      await writeFileAtomic(pointer, `${path}\n`);
      this.#pointer = pointer;
    }
    await fsp.rm(path, { force: true });
    await listenOn(this.#server, { socket: path });
    this.#path = path;
    return path;
  }

  /** Stops accepting and waits for the operations that are running. */
  /** Ends every control connection at once (a stop that ran out of time); their callers see the owner go away. */
  abort(): number {
    const n = this.#sockets.size;
    for (const s of this.#sockets) s.destroy();
    return n;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await Promise.allSettled([...this.#running]);
    for (const s of this.#sockets) s.destroy();
    if (this.#path) await fsp.rm(this.#path, { force: true });
    if (this.#pointer) await fsp.rm(this.#pointer, { force: true });
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setEncoding('utf8');
    const lines = new LineSplitter();
    let started = false;
    const send = (m: ControlReply): void => {
      if (!socket.destroyed) socket.write(encodeControl(m));
    };
    socket.on('data', (chunk: string) => {
      // One request per connection: anything after it (or after a refusal) is ignored.
      if (started) return;
      let got: string[];
      try {
        got = lines.push(chunk);
      } catch (e) {
        started = true;
        this.#refuse(socket, e);
        return;
      }
      const line = got[0];
      if (line === undefined) return;
      started = true;
      let op: string;
      let args: Record<string, unknown>;
      try {
        ({ op, args } = asRequest(decodeControl(line)));
      } catch (e) {
        this.#refuse(socket, e);
        return;
      }
      const handler = this.#handlers.get(op) ?? this.#fallback;
      if (!handler) {
        this.#refuse(socket, new JshipError('CONTROL_PROTOCOL', `unknown control operation "${op}"`, { hint: `the owner answers: ${[...this.#handlers.keys()].join(', ')}` }));
        return;
      }
      let last = 0;
      const run = handler(args, (done, total) => {
        const now = Date.now();
        if (now - last < 100 && done < total) return;
        last = now;
        send({ type: 'progress', done, total });
      }).then(
        (result) => send({ type: 'result', result }),
        (e: unknown) => send(errorReply(e)),
      ).finally(() => {
        this.#running.delete(run);
        socket.end();
      });
      this.#running.add(run);
    });
  }

  #refuse(socket: Socket, e: unknown): void {
    this.log({ event: 'control-refused', error: (e as Error).message });
    socket.end(encodeControl(errorReply(e)));
  }
}

function errorReply(e: unknown): ControlReply {
  if (e instanceof JshipError) {
    return { type: 'error', code: e.code, message: e.template.message, ...(e.template.hint ? { hint: e.template.hint } : {}), ...(e.details !== undefined ? { details: e.details } : {}) };
  }
  return { type: 'error', code: 'IO', message: (e as Error)?.message ?? String(e) };
}
