/**
 * The registration helper of in-server mode: PostgreSQL's postmaster runs it once at start (while it loads
 * `shared_preload_libraries`), as `node dist/inserver/register.js MODULES` in the data directory, with a
 * socket on fd 3. It runs each extension module's `_PG_init()` and sends each `load()` as a registration
 * frame, which the extension turns into a real `RegisterBackgroundWorker`; a module that fails sends one
 * failure frame (module and reason), which stops the server's start.
 */
import { writeSync } from "node:fs";
import { withInit, type InitContext } from "../context.js";
import type { WorkerDefinition } from "../definition.js";
import { ensureTypeScript, importFrom, modulePath } from "../modules.js";
import { markInServer, notInServerError } from "./mode.js";
import { FrameWriter } from "./wire.js";

const FD = 3;

function send(frame: FrameWriter): void {
  const bytes = frame.toBuffer();
  let written = 0;
  while (written < bytes.length) written += writeSync(FD, bytes, written, bytes.length - written);
}

function failed(module: string, reason: string): never {
  send(new FrameWriter("F").str(module).str(reason.split("\n")[0] ?? reason));
  process.exit(1);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function registrationFrame(definition: WorkerDefinition): FrameWriter {
  return new FrameWriter("R")
    .str(definition.name)
    .str(definition.type)
    .str(definition.library)
    .str(definition.function)
    .u8(definition.startTime)
    .i32(definition.restartTimeMs ?? -1)
    .u8(definition.spi ? 1 : 0)
    .str(JSON.stringify(definition));
}

async function main(): Promise<void> {
  markInServer();
  const modules = (process.argv[2] ?? "")
    .split(",")
    .map((m) => m.trim())
    .filter((m) => m !== "");
  const cwd = process.cwd();
  await ensureTypeScript();
  for (const module of modules) {
    const path = modulePath(module, cwd) ?? module;
    let namespace: Record<string, unknown>;
    try {
      namespace = await importFrom(module, cwd);
    } catch (error) {
      failed(module, `cannot load ${path}: ${message(error)}`);
    }
    const init = namespace["_PG_init"];
    if (typeof init !== "function") failed(module, `${path} exports no _PG_init() function`);
    const context: InitContext = {
      extension: path,
      registerStatic(definition, startup) {
        if (definition.shmem || startup !== undefined) {
          throw notInServerError(`load: background worker "${definition.name}" has enableShmemAccess()`, "shmem");
        }
        if (definition.scope === "cluster") throw notInServerError(`load: background worker "${definition.name}" has setScope("cluster")`, "cluster");
        send(registrationFrame(definition));
      },
      requestShmem() {
        throw notInServerError("pgShmemInit", "shmem");
      },
    };
    try {
      await withInit(context, () => (init as () => unknown)());
    } catch (error) {
      failed(module, message(error));
    }
  }
  send(new FrameWriter("Z"));
  process.exit(0);
}

main().catch((error: unknown) => failed("(bgworker)", message(error)));
