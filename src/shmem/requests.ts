/** Checks of the requests that `pgShmemInit` collects and the postmaster turns into one segment. */
import { fail, show } from "../errors.js";
import { structureNameRule } from "./structure.js";
import type { ShmemRequest } from "./types.js";

const MAX_STRUCTURE_SIZE = 2 ** 30;

/**
 * Throws unless every request is well-formed and every name is used once. The postmaster calls it over
 * the requests of all extensions together, so two extensions cannot claim one name.
 */
export function validateRequests(requests: readonly ShmemRequest[], caller: Function = validateRequests): void {
  if (!Array.isArray(requests)) fail(TypeError, `shared memory requests ${show(requests)} must be an array`, caller);
  const seen = new Map<string, string>();
  for (const [i, request] of requests.entries()) {
    const where = `shared memory request ${i + 1}`;
    if (request === null || typeof request !== "object") fail(TypeError, `${where} ${show(request)} must be an object`, caller);
    const rule = structureNameRule(request.name);
    if (rule !== undefined) fail(TypeError, `${where}: name ${show(request.name)} ${rule}`, caller);
    const named = `shared memory structure ${JSON.stringify(request.name)}`;
    if (typeof request.kind !== "string" || request.kind.length === 0) fail(TypeError, `${named}: kind ${show(request.kind)} must be a non-empty string`, caller);
    if (typeof request.signature !== "string" || request.signature.length === 0) {
      fail(TypeError, `${named}: signature ${show(request.signature)} must be a non-empty string`, caller);
    }
    if (typeof request.size !== "number" || !Number.isInteger(request.size) || request.size < 1 || request.size > MAX_STRUCTURE_SIZE) {
      fail(RangeError, `${named}: size ${show(request.size)} must be an integer from 1 to ${MAX_STRUCTURE_SIZE} bytes`, caller);
    }
    const align = request.align;
    if (typeof align !== "number" || !Number.isInteger(align) || align < 1 || align > 4096 || (align & (align - 1)) !== 0) {
      fail(RangeError, `${named}: align ${show(align)} must be a power of two from 1 to 4096`, caller);
    }
    const earlier = seen.get(request.name);
    if (earlier !== undefined) {
      fail(
        Error,
        `${named} is requested twice (${earlier} and ${request.signature}): names of shared memory structures must be unique across extensions`,
        caller,
      );
    }
    seen.set(request.name, request.signature);
  }
}
