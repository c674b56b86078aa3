// The raw-driver peers of the SPI overhead measure, in a plain node process: the same statements as the
// spiOverhead worker, through `pg` and through postgres.js. Prints one JSON line.
//   node sql.mjs pg|postgres HOST PORT USER DATABASE SELECTS
const [driver, host, port, user, database, selectsArg] = process.argv.slice(2);
const n = Number(selectsArg);
const result = {};
if (driver === "pg") {
  const { default: pg } = await import("pg");
  const client = new pg.Client({ host, port: Number(port), user, database });
  await client.connect();
  await client.query("SELECT 1");
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.BENCH_PAUSE ?? 3000))); // as the SPI worker does
  let t0 = performance.now();
  await client.query("BEGIN");
  for (let i = 0; i < n; i++) await client.query({ text: "SELECT $1::int AS v", values: [i], rowMode: "array" });
  await client.query("COMMIT");
  result.selectsMs = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < n / 10; i++) {
    await client.query("BEGIN");
    await client.query("INSERT INTO bench_tx (v) VALUES ($1)", [i]);
    await client.query("COMMIT");
  }
  result.transactionsMs = performance.now() - t0;
  await client.end();
} else {
  const { default: postgres } = await import("postgres");
  const sql = postgres({ host, port: Number(port), user, database, max: 1, onnotice: () => undefined });
  await sql`SELECT 1`;
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.BENCH_PAUSE ?? 3000))); // as the SPI worker does
  let t0 = performance.now();
  await sql.begin(async (tx) => {
    for (let i = 0; i < n; i++) await tx`SELECT ${i}::int AS v`;
  });
  result.selectsMs = performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < n / 10; i++) await sql.begin((tx) => tx`INSERT INTO bench_tx (v) VALUES (${i})`);
  result.transactionsMs = performance.now() - t0;
  await sql.end();
}
console.log(JSON.stringify(result));
