/**
 * Network namespaces for the partition fault that a relay cannot make: the postmaster runs in a namespace of
 * its own, joined to the host by a veth pair, and reaches PostgreSQL directly (the server listens on the
 * host's end of each pair). The partition drops every packet the postmaster's side sends
 * (`tc qdisc add dev X root pfifo limit 0` on the namespace's interface): the server's segments and its
 * keepalive probes arrive but are never acknowledged, so the server's TCP gives the session up by its own
 * timers (`tcp_user_timeout`, keepalives), as after a real cut. Issue #20: drops on the server's own
 * interface would not exercise keepalives (Linux does not count a probe lost to local congestion), hence
 * the postmaster's side; `iptables` and `netem` are absent here.
 *
 * Root only, and `ip` and `tc` must exist: `netnsUnavailable()` says why not, in one line, for the report.
 */
import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const path = join(dir, program);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not here.
    }
  }
  for (const dir of ["/usr/sbin", "/sbin"]) {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return join(dir, program);
    } catch {
      // Not here.
    }
  }
  return null;
}

/** Why network namespaces cannot be used here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "the network-namespace partition needs root (it creates namespaces and veth pairs)";
  if (which("ip") === null) return "the network-namespace partition needs `ip` (iproute2), which is not installed";
  if (which("tc") === null) return "the network-namespace partition needs `tc` (iproute2), which is not installed";
  return null;
}

function run(program: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(which(program) ?? program, args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else reject(new Error(`${program} ${args.join(" ")} failed: ${stderr.trim() || error.message}`));
    });
  });
}

/**
 * A second octet for this run's addresses, 10.X.i.0/30, from the pid: two harness runs at once (they should
 * take the heavy lock, but) do not share a subnet.
 */
export function subnetOctet(pid = process.pid): number {
  return 100 + (pid % 100);
}

/** One namespace and its veth pair: the host's end `hostAddress`, the postmaster's end `nsAddress`. */
export class NetnsLink {
  private dropping = false;

  private constructor(
    readonly namespace: string,
    readonly hostIf: string,
    readonly nsIf: string,
    readonly hostAddress: string,
    readonly nsAddress: string,
  ) {}

  /**
   * Creates namespace `cf<tag><label>` with a veth pair (names within IFNAMSIZ, 15 bytes). `index` (1..63)
   * picks the /30: 10.X.index.1 on the host, .2 in the namespace.
   */
  static async create(tag: string, label: string, index: number): Promise<NetnsLink> {
    const base = `cf${tag}${label}`.slice(0, 12);
    const octet = subnetOctet();
    const link = new NetnsLink(base, `${base}h`, `${base}n`, `10.${octet}.${index}.1`, `10.${octet}.${index}.2`);
    try {
      await run("ip", ["netns", "add", link.namespace]);
      await run("ip", ["link", "add", link.hostIf, "type", "veth", "peer", "name", link.nsIf]);
      await run("ip", ["link", "set", link.nsIf, "netns", link.namespace]);
      await run("ip", ["addr", "add", `${link.hostAddress}/30`, "dev", link.hostIf]);
      await run("ip", ["link", "set", link.hostIf, "up"]);
      await link.inside("ip", ["addr", "add", `${link.nsAddress}/30`, "dev", link.nsIf]);
      await link.inside("ip", ["link", "set", link.nsIf, "up"]);
      await link.inside("ip", ["link", "set", "lo", "up"]);
    } catch (error) {
      await link.destroy();
      throw error;
    }
    return link;
  }

  /** The host-side addresses' network, for pg_hba.conf. */
  static network(): string {
    return `10.${subnetOctet()}.0.0/16`;
  }

  private inside(program: string, args: readonly string[]): Promise<string> {
    return run("ip", ["netns", "exec", this.namespace, which(program) ?? program, ...args]);
  }

  /** Drops every packet the namespace's side sends: the partition. */
  async drop(): Promise<void> {
    await this.inside("tc", ["qdisc", "add", "dev", this.nsIf, "root", "pfifo", "limit", "0"]);
    this.dropping = true;
  }

  /** Ends the partition. */
  async restore(): Promise<void> {
    if (!this.dropping) return;
    await this.inside("tc", ["qdisc", "del", "dev", this.nsIf, "root"]);
    this.dropping = false;
  }

  /** Removes the namespace (its end of the pair goes with it) and the host's end. Never throws. */
  async destroy(): Promise<void> {
    await run("ip", ["netns", "del", this.namespace]).catch(() => undefined);
    await run("ip", ["link", "del", this.hostIf]).catch(() => undefined);
  }
}
