/**
 * A TCP relay between one postmaster and PostgreSQL, for the half-open partition fault: every connection
 * of that postmaster (its cluster session and its workers' SPI sessions) goes through it, and `pause()`
 * stops forwarding in both directions WITHOUT closing anything.
 *
 * That is what a cut cable or a dropped route looks like to both ends, as far as a relay can make it: no
 * FIN, no RST, the sockets stay open, bytes simply stop arriving. Each end's kernel still acknowledges what
 * reaches its socket, so TCP keepalives are answered (a relay cannot fake their loss: the network-namespace
 * fault drops packets for that); a session is given up by the timeouts of its peer's application
 * (the postmaster's query timeouts, the server's `idle_session_timeout`) or terminated by a taker.
 *
 * While paused: nothing is forwarded either way (the sockets are paused; Node may still read ahead into its
 * buffers, which are forwarded at resume), new connections are accepted by the kernel and held without being
 * connected upstream, and a close on one side is not passed on to the other (that would tell the other end
 * about the partition); everything held is carried out on `resume()`.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

interface Pair {
  readonly client: Socket;
  upstream: Socket | null;
  /** A side closed while paused: passed on at resume. */
  closedWhilePaused: boolean;
}

export class Relay {
  private readonly server: Server;
  private readonly pairs = new Set<Pair>();
  private paused = false;
  private closed = false;
  /** Bytes forwarded each way, for the report. */
  readonly bytes = { up: 0, down: 0 };
  /** Connections accepted so far. */
  connections = 0;

  private constructor(
    readonly target: { readonly host: string; readonly port: number },
    readonly listenHost: string,
  ) {
    this.server = createServer({ pauseOnConnect: true }, (client) => this.accept(client));
  }

  /** A relay listening on `listenHost` (a free port), forwarding to `target`. */
  static async open(target: { host: string; port: number }, listenHost = "127.0.0.1"): Promise<Relay> {
    const relay = new Relay(target, listenHost);
    await new Promise<void>((resolve, reject) => {
      relay.server.once("error", reject);
      relay.server.listen(0, listenHost, () => {
        relay.server.off("error", reject);
        resolve();
      });
    });
    return relay;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("relay is not listening");
    return address.port;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Open connections (client side). */
  get open(): number {
    return this.pairs.size;
  }

  /** Stops forwarding in both directions; nothing is closed. */
  pause(): void {
    this.paused = true;
    for (const pair of this.pairs) {
      pair.client.pause();
      pair.upstream?.pause();
    }
  }

  /** Forwards again: held connections are connected upstream, held closes passed on. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const pair of [...this.pairs]) {
      if (pair.closedWhilePaused) {
        this.drop(pair);
        continue;
      }
      if (pair.upstream === null) this.connectUpstream(pair);
      else {
        pair.client.resume();
        pair.upstream.resume();
      }
    }
  }

  /** Stops listening and destroys every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const pair of [...this.pairs]) this.drop(pair, true);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    this.connections += 1;
    client.setNoDelay(true);
    const pair: Pair = { client, upstream: null, closedWhilePaused: false };
    this.pairs.add(pair);
    client.on("error", () => undefined);
    client.on("close", () => this.sideClosed(pair));
    // pauseOnConnect: nothing is read until the upstream side exists (and the relay is not paused).
    if (!this.paused) this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    const upstream = connect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    pair.upstream = upstream;
    upstream.on("error", () => undefined);
    upstream.on("close", () => this.sideClosed(pair));
    this.forward(pair, pair.client, upstream, "up");
    this.forward(pair, upstream, pair.client, "down");
    upstream.once("connect", () => {
      if (!this.paused) pair.client.resume();
    });
    if (this.paused) upstream.pause();
  }

  /** Copies `from` to `to` with back-pressure; a paused relay reads nothing, so forwards nothing. */
  private forward(pair: Pair, from: Socket, to: Socket, direction: "up" | "down"): void {
    from.on("data", (chunk: Buffer) => {
      this.bytes[direction] += chunk.length;
      if (!to.write(chunk)) from.pause();
    });
    to.on("drain", () => {
      if (!this.paused) from.resume();
    });
    // A FIN is passed on after what was written before it; not while paused (a paused stream may still see
    // its end, Node reads ahead into its buffer): then at resume.
    from.on("end", () => {
      if (this.paused && !this.closed) pair.closedWhilePaused = true;
      else to.end();
    });
  }

  private sideClosed(pair: Pair): void {
    if (!this.pairs.has(pair)) return;
    if (this.paused && !this.closed) {
      pair.closedWhilePaused = true; // the other end must not learn of it through the partition
      return;
    }
    this.drop(pair);
  }

  /** Ends both sides (what is written still goes out: a server's last FATAL, say), or destroys them. */
  private drop(pair: Pair, destroy = false): void {
    this.pairs.delete(pair);
    for (const socket of [pair.client, pair.upstream]) {
      if (socket === null) continue;
      if (destroy) socket.destroy();
      else {
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      }
    }
  }
}
