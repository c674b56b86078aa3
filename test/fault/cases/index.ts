/** Every case of the fault suite, in the order they run. */
import type { FaultCase } from "../harness.js";
import { chaos } from "./chaos.js";
import { DATABASE_CASES } from "./database.js";
import { fuzzBuilder } from "./fuzz-builder.js";
import { fuzzCli } from "./fuzz-cli.js";
import { fuzzControl } from "./fuzz-control.js";
import { shutdownTimeout, storm } from "./storm.js";

export const CASES: readonly FaultCase[] = [chaos, storm, shutdownTimeout, fuzzControl, fuzzCli, fuzzBuilder, ...DATABASE_CASES];
