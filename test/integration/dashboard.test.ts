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
        // Page code is given as strings: this file is compiled without the DOM's types.
        const rowOf = async (slot: number): Promise<{ state: string; pid: string; restarts: string; text: string }> =>
          (await page.evaluate(`(() => {
            const row = document.querySelector("#slot-${slot}");
            return { state: row.dataset.state, pid: row.dataset.pid, restarts: row.dataset.restarts, text: row.innerText };
          })()`)) as { state: string; pid: string; restarts: string; text: string };
        const rowIs = (slot: number, state: string, restarts?: number): Promise<unknown> =>
          page.waitForFunction(
            `(() => { const row = document.querySelector("#slot-${slot}");
              return row !== null && row.dataset.state === ${JSON.stringify(state)}${restarts === undefined ? "" : ` && row.dataset.restarts === "${restarts}"`}; })()`,
            { timeout: PATIENCE_MS },
          );
        await rowIs(1, "running");
        const before = await rowOf(1);
        assert.equal(before.pid, String(rollup));
        assert.equal(before.restarts, "0");
        assert.match(before.text, /rollup/);
        await page.waitForFunction(`document.getElementById("conn").textContent === "live"`, { timeout: PATIENCE_MS });

        process.kill(rollup, "SIGKILL");
        // Its restart time is 3 s: the row shows the backoff, then the new process, counted.
        await rowIs(1, "backoff");
        assert.match((await rowOf(1)).text, /SIGKILL/);
        await rowIs(1, "running", 1);
        const afterRestart = await rowOf(1);
        assert.notEqual(afterRestart.pid, before.pid);
        assert.ok(!started.some((e: WorkerEvent) => String(e.pid) === afterRestart.pid), "a new process");
        // The chart has the state bands; the log tail has the exit line.
        assert.ok(Number(await page.evaluate(`document.querySelectorAll("#slot-1 svg rect").length`)) >= 3);
        await page.waitForFunction(`/background worker "rollup" \\(PID ${rollup}\\) was terminated by signal 9/.test(document.getElementById("log").textContent)`, {
          timeout: PATIENCE_MS,
        });
        const screenshot = process.env.BGWORKER_SCREENSHOT;
        if (screenshot !== undefined && screenshot !== "") {
          // A little history for the charts: the mailer fails every few seconds.
          await page.waitForFunction(`Number(document.querySelector("#slot-2").dataset.restarts) >= 4`, { timeout: 60_000 });
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
