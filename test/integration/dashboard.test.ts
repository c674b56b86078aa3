/**
 * The dashboard in a real browser: Debian's Chromium, headless, driven with puppeteer-core. The page shows
 * the slot table; a worker killed with SIGKILL changes its row in place and its restart is counted.
 * With BGWORKER_SCREENSHOT=PATH the test also saves a screenshot there (docs/dashboard.png is made so).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { PATIENCE_MS, startPostmaster, type WorkerEvent } from "../helpers/postmaster.js";

const CHROMIUM_CANDIDATES = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
const chromium = CHROMIUM_CANDIDATES.find((path): path is string => path !== undefined && path !== "" && existsSync(path));

/** As root in a container: no sandbox, no GPU, nothing fetched from the network. */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

describe("dashboard", () => {
  it(
    "shows the slot table live in Chromium: a killed worker's row changes and its restart is counted",
    { skip: chromium === undefined ? "Chromium not found (apt-get install chromium, or set CHROMIUM_PATH)" : false, timeout: 120_000 },
    async () => {
      const { default: puppeteer } = await import("puppeteer-core");
      const pm = await startPostmaster({
        workers: [
          { name: "ingest", function: "latchLoop" },
          { name: "rollup", function: "sleepForever", restartTimeMs: 3_000 },
          { name: "mailer", function: "runThenExit", argument: 1, restartTimeMs: 4_000, type: "mail sender" },
        ],
        args: ["--no-database", "--http", "127.0.0.1:0"],
      });
      const profile = mkdtempSync(join(tmpdir(), "bgw-chromium-"));
      const browser = await puppeteer.launch({
        executablePath: chromium!,
        headless: true,
        args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`],
        defaultViewport: { width: 1280, height: 720 },
      });
      try {
        const url = await pm.until("the HTTP address", () => pm.stdout.map((l) => /^serving HTTP on (\S+)$/.exec(l)?.[1]).find(Boolean));
        const started = await pm.waitForEvents("started", 3);
        const rollup = await pm.until("rollup's pid", () => pm.records.find((r) => r.worker?.name === "rollup" && r.stream === "stdout")?.pid);
        const page = await browser.newPage();
        await page.goto(url, { waitUntil: "load" });
        const rowOf = (slot: number): Promise<{ state: string; pid: string; restarts: string; text: string }> =>
          page.$eval(`#slot-${slot}`, (tr) => {
            const row = tr as HTMLTableRowElement;
            return { state: row.dataset.state ?? "", pid: row.dataset.pid ?? "", restarts: row.dataset.restarts ?? "", text: row.innerText };
          });
        await page.waitForFunction(() => document.querySelector("#slot-1")?.getAttribute("data-state") === "running", { timeout: PATIENCE_MS });
        const before = await rowOf(1);
        assert.equal(before.pid, String(rollup));
        assert.equal(before.restarts, "0");
        assert.match(before.text, /rollup/);
        assert.equal(await page.$eval("#conn", (e) => e.textContent), "live");

        process.kill(rollup, "SIGKILL");
        // Its restart time is 3 s: the row shows the backoff, then the new process, counted.
        await page.waitForFunction(() => document.querySelector("#slot-1")?.getAttribute("data-state") === "backoff", { timeout: PATIENCE_MS });
        assert.match((await rowOf(1)).text, /SIGKILL/);
        await page.waitForFunction(
          () => {
            const row = document.querySelector("#slot-1");
            return row?.getAttribute("data-state") === "running" && row.getAttribute("data-restarts") === "1";
          },
          { timeout: PATIENCE_MS },
        );
        const afterRestart = await rowOf(1);
        assert.notEqual(afterRestart.pid, before.pid);
        assert.ok(!started.some((e: WorkerEvent) => String(e.pid) === afterRestart.pid), "a new process");
        // The chart has the state bands; the log tail has the exit line.
        assert.ok((await page.$$eval("#slot-1 svg rect", (rects) => rects.length)) >= 3);
        await page.waitForFunction(() => /background worker "rollup" \(PID \d+\) was terminated by signal 9|"rollup".*SIGKILL|signal 9/.test(document.getElementById("log")?.textContent ?? ""), {
          timeout: PATIENCE_MS,
        });
        const screenshot = process.env.BGWORKER_SCREENSHOT;
        if (screenshot !== undefined && screenshot !== "") {
          // A little history for the charts: the mailer fails every few seconds.
          await page.waitForFunction(() => Number(document.querySelector("#slot-2")?.getAttribute("data-restarts")) >= 4, { timeout: 60_000 });
          await page.screenshot({ path: screenshot as `${string}.png`, fullPage: true });
        }
      } finally {
        await browser.close();
        rmSync(profile, { recursive: true, force: true });
        await pm.close();
      }
    },
  );
});
