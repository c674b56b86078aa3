// The raw-driver peers of the SPI overhead measure, in a plain node process: the same statements as the
// spiOverhead worker, through `pg` and through postgres.js, each two ways. Prints one JSON line.
//   node sql.mjs DRIVER HOST PORT USER DATABASE SELECTS      (BENCH_PAUSE: ms to wait before measuring)
//   pg               an unnamed statement per query (Parse, Bind, Describe, Execute), as SPI sends them
//   pg-prepared      a named statement: parsed once per session, then Bind and Execute
//   postgres         postgres.js's tagged templates, which it prepares once per session by default
//   postgres-unsafe  postgres.js given SQL text and a parameter array, as SPI's API would have to call it
//                    (`sql.unsafe`, which prepares nothing by default)
const [driver, host, port, user, database, selectsArg] = process.argv.slice(2);
const n = Number(selectsArg);
const pause = () => new Promise((resolve) => setTimeout(resolve, Number(process.env.BENCH_PAUSE ?? 3000))); // as the SPI worker does
const result = {};
if (driver === "pg" || driver === "pg-prepared") {
  const { default: pg } = await import("pg");
  const named = driver === "pg-prepared";
  const client = new pg.Client({ host, port: Number(port), user, database });
  await client.connect();
  await client.query("SELECT 1");
  await pause();
  let t0 = performance.now();
  await client.query("BEGIN");
  for (let i = 0; i < n; i++) {
    await client.query({ ...(named ? { name: "bench_select" } : {}), text: "SELECT $1::int AS v", values: [i], rowMode: "array" });
  }
  await client.query("COMMIT");
  result.selectsMs = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < n / 10; i++) {
    await client.query("BEGIN");
    await client.query({ ...(named ? { name: "bench_insert" } : {}), text: "INSERT INTO bench_tx (v) VALUES ($1)", values: [i] });
    await client.query("COMMIT");
  }
  result.transactionsMs = performance.now() - t0;
  await client.end();
} else if (driver === "postgres" || driver === "postgres-unsafe") {
  const { default: postgres } = await import("postgres");
  const unsafe = driver === "postgres-unsafe";
  const sql = postgres({ host, port: Number(port), user, database, max: 1, onnotice: () => undefined });
  await sql`SELECT 1`;
  await pause();
  let t0 = performance.now();
  await sql.begin(async (tx) => {
    for (let i = 0; i < n; i++) await (unsafe ? tx.unsafe("SELECT $1::int AS v", [i]) : tx`SELECT ${i}::int AS v`);
  });
  result.selectsMs = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < n / 10; i++) {
    await sql.begin((tx) => (unsafe ? tx.unsafe("INSERT INTO bench_tx (v) VALUES ($1)", [i]) : tx`INSERT INTO bench_tx (v) VALUES (${i})`));
  }
  result.transactionsMs = performance.now() - t0;
  await sql.end();
} else {
  console.error(`sql.mjs: unknown driver ${driver}`);
  process.exit(2);
}
console.log(JSON.stringify(result));
