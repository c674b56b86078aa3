// Plain Node processes in the shapes a worker process has, for the figures that explain a launch, a restart
// and a worker's memory (the bench runs them itself; nothing here imports the bench). A shape is a
// comma-separated list, "bare" for none:
//   package   `import "bgworker"` of the built package (dist/index.js)
//   tsx       TypeScript loader registered as a runner registers it (tsx's ESM and CJS APIs), then warmed with
//             the same shipped .d.ts a spare imports (its transform comes from tsx's disk cache)
//   thread    one idle worker thread, as the orphan watchdog is
//   typescript  the package's TypeScript module hooks (dist/modules.js ensureTypeScript(): Node's in-thread
//             hooks where the line has them, else the hooks on Node's loader thread), which a runner installs
//             only for a library that needs them (docs/lifecycle.md)
//   library   a `.ts` worker library (BENCH_LIBRARY) loaded as a spare preloads one: dist/modules.js
//             importFrom(), its compiled files from the cache, no hooks
//   pg        the `pg` driver imported (what SPI loads)
// The parts load in the runner's order: package, library (then typescript, pg, tsx, thread on their own).
// Modes:
//   idle SHAPE              prints "ready" once shaped, then stays (the bench reads its RSS and PSS); forked
//                           with an IPC channel, it sends {t: "ready", cpuMs} instead: its own user + system CPU
//                           from exec to shaped (getrusage), and stays until the channel closes
//   exit SHAPE FILE         shaped, a moment later appends its wall-clock ms to FILE and calls process.exit(0)
//   esbuild DIR TAG         tsx shape; imports two .ts files never seen (new content in DIR) and prints one JSON
//                           line: each import's ms, and esbuild's service process (present before? its RSS)
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function shape(list) {
  const parts = new Set(list.split(","));
  if (parts.has("typescript")) await (await import(pathToFileURL(join(REPO, "dist", "modules.js")).href)).ensureTypeScript();
  if (parts.has("package")) await import(pathToFileURL(join(REPO, "dist", "index.js")).href);
  if (parts.has("tsx")) {
    const [esm, cjs] = await Promise.all([import("tsx/esm/api"), import("tsx/cjs/api")]);
    esm.register();
    cjs.register();
    await import(pathToFileURL(join(REPO, "dist", "runtime", "loader-warmup.d.ts")).href).catch(() => undefined);
  }
  if (parts.has("library")) await (await import(pathToFileURL(join(REPO, "dist", "modules.js")).href)).importFrom(process.env.BENCH_LIBRARY, process.cwd());
  if (parts.has("pg")) await import("pg");
  if (parts.has("thread")) new Worker("setInterval(() => {}, 1 << 30)", { eval: true }).unref();
}

/** This process's children (of any of its threads) named esbuild. */
function esbuildChildren() {
  const pids = [];
  for (const task of readdirSync(`/proc/${process.pid}/task`)) {
    try {
      pids.push(...readFileSync(`/proc/${process.pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean));
    } catch {
      // the thread ended
    }
  }
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "esbuild";
    } catch {
      return false;
    }
  });
}

const rssKb = (pid) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);

const [mode, ...args] = process.argv.slice(2);
if (mode === "idle") {
  await shape(args[0]);
  if (process.send !== undefined) {
    const cpu = process.cpuUsage();
    process.send({ t: "ready", cpuMs: (cpu.user + cpu.system) / 1000 });
    process.on("disconnect", () => process.exit(0));
  } else {
    process.stdout.write("ready\n");
  }
  setInterval(() => undefined, 1 << 30);
} else if (mode === "exit") {
  await shape(args[0]);
  await sleep(300); // threads started, start-up collections past
  appendFileSync(args[1], `${now()}\n`);
  process.exit(0);
} else if (mode === "esbuild") {
  const [dir, tag] = args;
  await shape("tsx");
  const source = (n) => `// ${tag} ${n} ${Math.random()}\nexport function idle(): Promise<void> {\n  const n: number = ${n};\n  return Promise.resolve(void n);\n}\n`;
  const file = (n) => {
    const path = join(dir, `esbuild-${tag}-${n}.ts`);
    writeFileSync(path, source(n));
    return pathToFileURL(path).href;
  };
  const first = file(1);
  const second = file(2);
  const before = esbuildChildren().length > 0;
  let t0 = performance.now();
  await import(first);
  const firstMs = performance.now() - t0;
  const service = esbuildChildren();
  t0 = performance.now();
  await import(second);
  const secondMs = performance.now() - t0;
  console.log(JSON.stringify({ firstMs, secondMs, esbuildBefore: before, esbuildRssKb: service.length > 0 ? rssKb(service[0]) : null }));
  process.exit(0);
} else {
  console.error(`node.mjs: unknown mode ${mode}`);
  process.exit(2);
}
