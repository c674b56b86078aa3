/**
 * The one check of `new Postmaster` options' values: a broken rule is a TypeError naming the option, the value
 * and the rule, with the options' code. Used by the postmaster's options and by cluster mode's.
 */
import { makeError, show } from "./errors.js";

export function invalidOption(message: string): TypeError {
  return makeError(TypeError, "ERR_BGWORKER_INVALID_OPTION", `Postmaster: ${message}`);
}

/** `value` as an integer from `min` to `max`, or the option's error. */
export function integerOption(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalidOption(`${field} ${show(value)} must be an integer from ${min} to ${max}`);
  }
  return value;
}
