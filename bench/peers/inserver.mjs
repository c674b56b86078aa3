// The peers of the in-server group, each in a plain node process (no tsx, no bgworker). Prints one JSON line.
//   node inserver.mjs pg SOCKET_DIR PORT SELECTS ROW_SELECTS WARMUP
//       node-postgres over the server's Unix socket: `SELECT 1` and `SELECT i, s FROM bench_rows` (1,000 rows),
//       each timed alone, all in one transaction, as the SPI workers run them (BENCH_PAUSE: ms to wait first)
//   node inserver.mjs bare N
//       a bare `node -e` started N times, one after another: from before spawn() to its first statement, and
//       the part of it until the process began (its performance.timeOrigin)
import { spawn } from "node:child_process";

const now = () => performance.timeOrigin + performance.now();
const [mode, ...args] = process.argv.slice(2);

async function pgPeer([host, port, selectsArg, rowSelectsArg, warmupArg]) {
  const { default: pg } = await import("pg");
  const [selects, rowSelects, warmup] = [selectsArg, rowSelectsArg, warmupArg].map(Number);
  const client = new pg.Client({ host, port: Number(port), user: "postgres", database: "postgres" });
  await client.connect();
  await client.query("SELECT 1");
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.BENCH_PAUSE ?? 3000)));
  const select1Us = [];
  const rowsUs = [];
  await client.query("BEGIN");
  for (let i = 0; i < warmup + selects; i++) {
    const t0 = performance.now();
    await client.query("SELECT 1");
    if (i >= warmup) select1Us.push((performance.now() - t0) * 1000);
  }
  for (let i = 0; i < Math.ceil(warmup / 10) + rowSelects; i++) {
    const t0 = performance.now();
    const { rows } = await client.query("SELECT i, s FROM bench_rows");
    if (rows.length !== 1000) throw new Error(`inserver.mjs: ${rows.length} rows, not 1000`);
    if (i >= Math.ceil(warmup / 10)) rowsUs.push((performance.now() - t0) * 1000);
  }
  await client.query("COMMIT");
  await client.end();
  return { select1Us, rowsUs };
}

function bareStart() {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(process.execPath, ["-e", "process.stdout.write(performance.timeOrigin + performance.now() + ' ' + performance.timeOrigin)"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.once("error", reject);
    child.once("exit", () => {
      const [at, origin] = out.split(" ").map(Number);
      resolve({ ms: at - t0, toProcessMs: origin - t0 });
    });
  });
}

async function bare([countArg]) {
  const startMs = [];
  const toProcessMs = [];
  for (let i = 0; i < Number(countArg) + 1; i++) {
    const sample = await bareStart();
    // The first warms the page cache.
    if (i > 0) {
      startMs.push(sample.ms);
      toProcessMs.push(sample.toProcessMs);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { startMs, toProcessMs };
}

if (mode === "pg") console.log(JSON.stringify(await pgPeer(args)));
else if (mode === "bare") console.log(JSON.stringify(await bare(args)));
else {
  console.error(`inserver.mjs: unknown mode ${mode}`);
  process.exit(2);
}
