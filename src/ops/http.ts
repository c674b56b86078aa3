/**
 * `start --http [HOST:]PORT`: `/metrics` (Prometheus), `/api/status` (the JSON of `status --json`),
 * `/api/history`, `/api/logs`, `/api/events` (server-sent events on every state change and log line) and
 * the read-only dashboard at `/`. Loopback only unless a token is set; with a token every request must
 * carry it (`Authorization: Bearer TOKEN` or `?token=TOKEN`).
 */
import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { isIP } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { packageRoot } from "../package-paths.js";
import { OpsMetrics } from "./metrics.js";
import { StatusTracker, type OpsSource } from "./source.js";

export interface HttpAddress {
  readonly host: string;
  readonly port: number;
}

/** The environment variable read when `--http-token` is not given. */
export const HTTP_TOKEN_ENV = "BGWORKER_HTTP_TOKEN";

/** `8080`, `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`, `localhost:8080`; undefined when malformed. */
export function parseHttpAddress(text: string): HttpAddress | undefined {
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]+):)?([0-9]{1,5})$/.exec(text);
  if (match === null) return undefined;
  const port = Number(match[2]);
  if (port > 65_535) return undefined;
  const rawHost = match[1] ?? "127.0.0.1";
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost;
  if (host.length === 0 || (rawHost.startsWith("[") && isIP(host) !== 6)) return undefined;
  return { host, port };
}

/** Whether only this host can reach `host`: 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}

/** `http://127.0.0.1:8080/`, with IPv6 hosts in brackets. */
export function urlOf(address: HttpAddress): string {
  return `http://${isIP(address.host) === 6 ? `[${address.host}]` : address.host}:${address.port}/`;
}

/** The dashboard: one HTML file with inline CSS and JS, shipped in src/ops/ (also when built). */
function dashboardHtml(): string {
  return readFileSync(join(packageRoot(), "src", "ops", "dashboard.html"), "utf8");
}

function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (given === null || given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface OpsServerOptions extends HttpAddress {
  readonly source: OpsSource;
  /** Required for a non-loopback host. */
  readonly token?: string | undefined;
}

export class OpsServer {
  private readonly server: http.Server;
  private readonly tracker: StatusTracker;
  private readonly metrics: OpsMetrics;
  private readonly streams = new Set<http.ServerResponse>();
  private readonly html = dashboardHtml();
  private readonly unsubscribeLog: () => void;
  private readonly heartbeat: NodeJS.Timeout;
  private bound: HttpAddress | undefined;

  constructor(private readonly options: OpsServerOptions) {
    if (!isLoopback(options.host) && (options.token === undefined || options.token === "")) {
      throw new TypeError(`--http ${options.host}:${options.port} is not a loopback address: it requires a token (--http-token or ${HTTP_TOKEN_ENV})`);
    }
    this.tracker = new StatusTracker(options.source);
    this.metrics = new OpsMetrics(this.tracker);
    this.server = http.createServer((request, response) => void this.handle(request, response));
    this.tracker.subscribe((report) => this.broadcast("status", JSON.stringify(report)));
    this.unsubscribeLog = options.source.logTail.subscribe((line) => this.broadcast("log", JSON.stringify(line)));
    // Comments keep idle proxies from closing the stream, and reveal dead readers.
    this.heartbeat = setInterval(() => this.broadcastComment(), 15_000);
    this.heartbeat.unref();
  }

  /** Listens; resolves with the bound address (the real port when 0 was asked). */
  async listen(): Promise<HttpAddress> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.removeListener("error", reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.bound = { host: this.options.host, port: address.port };
    return this.bound;
  }

  get url(): string | undefined {
    return this.bound === undefined ? undefined : urlOf(this.bound);
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    this.unsubscribeLog();
    this.tracker.close();
    for (const stream of this.streams) stream.end();
    this.streams.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private authorized(request: http.IncomingMessage, url: URL): boolean {
    const token = this.options.token;
    if (token === undefined || token === "") return true;
    const header = request.headers.authorization;
    const bearer = header?.startsWith("Bearer ") === true ? header.slice(7) : undefined;
    return tokenMatches(bearer, token) || tokenMatches(url.searchParams.get("token"), token);
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://bgworker.invalid");
    const send = (status: number, type: string, body: string): void => {
      response.writeHead(status, { "content-type": type, "cache-control": "no-store", "x-content-type-options": "nosniff" });
      response.end(body);
    };
    if (request.method !== "GET" && request.method !== "HEAD") return send(405, "text/plain; charset=utf-8", "read-only: GET only\n");
    if (!this.authorized(request, url)) {
      response.setHeader("www-authenticate", 'Bearer realm="bgworker"');
      return send(401, "text/plain; charset=utf-8", "a token is required: Authorization: Bearer TOKEN or ?token=TOKEN\n");
    }
    try {
      switch (url.pathname) {
        case "/":
          response.setHeader("content-security-policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'");
          return send(200, "text/html; charset=utf-8", this.html);
        case "/metrics":
          return send(200, this.metrics.contentType, await this.metrics.text());
        case "/api/status":
          return send(200, "application/json", JSON.stringify(this.tracker.refresh()));
        case "/api/history":
          return send(200, "application/json", JSON.stringify({ now: Date.now(), history: this.tracker.historyOf() }));
        case "/api/logs": {
          const n = Math.min(1000, Math.max(0, Number(url.searchParams.get("n") ?? 100) || 0));
          return send(200, "application/json", JSON.stringify(this.options.source.logTail.lines(n)));
        }
        case "/api/events":
          return this.openStream(response);
        default:
          return send(404, "text/plain; charset=utf-8", "not found\n");
      }
    } catch (error) {
      return send(500, "text/plain; charset=utf-8", `${error instanceof Error ? error.message : String(error)}\n`);
    }
  }

  private openStream(response: http.ServerResponse): void {
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
    response.write(`retry: 1000\nevent: status\ndata: ${JSON.stringify(this.tracker.refresh())}\n\n`);
    this.streams.add(response);
    response.on("close", () => this.streams.delete(response));
  }

  private broadcast(event: string, data: string): void {
    for (const stream of this.streams) stream.write(`event: ${event}\ndata: ${data}\n\n`);
  }

  private broadcastComment(): void {
    for (const stream of this.streams) stream.write(": keep-alive\n\n");
  }
}
