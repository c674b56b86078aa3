// The script PM2 starts: notes when its code runs (wall-clock ms) in BENCH_FILE.
//   BENCH_MODE=start  stays up until PM2 stops it
//   BENCH_MODE=flap   runs a little over a second (PM2's min_uptime is 1 s), notes its exit, exits 1
const { appendFileSync } = require("node:fs");
const now = () => performance.timeOrigin + performance.now();
const file = process.env.BENCH_FILE;
appendFileSync(file, `enter ${now()}\n`);
if (process.env.BENCH_MODE === "flap") {
  setTimeout(() => {
    appendFileSync(file, `exit ${now()}\n`);
    process.exit(1);
  }, 1050);
} else {
  setInterval(() => undefined, 1 << 30);
}
