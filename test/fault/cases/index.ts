/** Every case of the fault suite, in the order they run. */
import type { FaultCase } from "../harness.js";
import { chaos } from "./chaos.js";

export const CASES: readonly FaultCase[] = [chaos];
