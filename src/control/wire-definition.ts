/**
 * A worker definition that arrives over the control socket is untrusted input. It is rebuilt through
 * `BackgroundWorkerBuilder`'s setters, so a definition from a socket obeys exactly the rules (and gets
 * exactly the messages) of one built in-process; this module adds only the JSON-level shape checks.
 */
import { BackgroundWorkerBuilder, definitionOf, MAX_EXTRA_BYTES } from "../builder.js";
import { decodeDatum, type Datum, type EncodedDatum, type WorkerDefinition, type WorkerScope } from "../definition.js";
import { codeOf, makeError, show } from "../errors.js";

const FIELDS = [
  "name",
  "type",
  "library",
  "function",
  "startTime",
  "restartTimeMs",
  "argument",
  "extra",
  "spi",
  "shmem",
  "notifyPid",
] as const;

/** Fields a definition may leave out: their builder default applies (`scope`: "host"). */
const OPTIONAL_FIELDS = ["scope"] as const;

/** Canonical base64 (with padding); at most the encoding of MAX_EXTRA_BYTES bytes. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MAX_EXTRA_BASE64 = Math.ceil(MAX_EXTRA_BYTES / 3) * 4;
const DECIMAL_INTEGER = /^-?(?:0|[1-9][0-9]*)$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function invalid(field: string, value: unknown, rule: string): TypeError {
  return makeError(TypeError, "ERR_BGWORKER_INVALID_DEFINITION", `invalid worker definition: ${field} ${show(value)} ${rule}`);
}

function expect(record: Record<string, unknown>, field: string, type: "string" | "number" | "boolean"): void {
  if (typeof record[field] !== type) throw invalid(field, record[field], `must be a ${type}`);
}

function datumFromWire(value: unknown): Datum {
  if (!isRecord(value)) throw invalid("argument", value, 'must be an encoded Datum such as {"kind":"number","value":1}');
  const keys = Object.keys(value).sort().join(",");
  const encoded = value as { kind?: unknown; value?: unknown };
  switch (encoded.kind) {
    case "null":
      if (keys !== "kind") throw invalid("argument", value, 'of kind "null" must have no value');
      return decodeDatum({ kind: "null" });
    case "number":
    case "boolean":
      if (keys !== "kind,value" || typeof encoded.value !== encoded.kind) {
        throw invalid("argument", value, `of kind "${encoded.kind}" must have a ${encoded.kind} value`);
      }
      return decodeDatum(encoded as EncodedDatum);
    case "bigint":
      if (keys !== "kind,value" || typeof encoded.value !== "string" || !DECIMAL_INTEGER.test(encoded.value)) {
        throw invalid("argument", value, 'of kind "bigint" must have a decimal integer string value');
      }
      return decodeDatum({ kind: "bigint", value: encoded.value });
    default:
      throw invalid("argument.kind", encoded.kind, 'must be "null", "number", "bigint" or "boolean"');
  }
}

function extraFromWire(value: unknown): Uint8Array {
  if (typeof value !== "string") throw invalid("extra", value, "must be a base64 string");
  // Checked before decoding so that a huge string is refused without allocating its decoding.
  if (value.length > MAX_EXTRA_BASE64 + 4 || !BASE64.test(value)) {
    throw invalid("extra", value, `must be canonical base64 of at most ${MAX_EXTRA_BYTES} bytes`);
  }
  return new Uint8Array(Buffer.from(value, "base64"));
}

/** Rethrows a builder error with the prefix that says where the definition came from. */
function rebuild<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    // The builder's code says which rule broke; the prefix says where the definition came from.
    const code = codeOf(error) ?? "ERR_BGWORKER_INVALID_DEFINITION";
    if (error instanceof RangeError) throw makeError(RangeError, code, `invalid worker definition: ${error.message}`);
    if (error instanceof TypeError) throw makeError(TypeError, code, `invalid worker definition: ${error.message}`);
    throw error;
  }
}

/**
 * Validates a definition received as JSON and returns the frozen definition the builder makes of it.
 * Throws a TypeError or RangeError naming the field, the value and the rule.
 */
export function definitionFromWire(value: unknown): WorkerDefinition {
  if (!isRecord(value)) throw invalid("definition", value, "must be an object");
  const unknown = Object.keys(value).filter((key) => !(FIELDS as readonly string[]).includes(key) && !(OPTIONAL_FIELDS as readonly string[]).includes(key));
  if (unknown.length > 0) throw makeError(TypeError, "ERR_BGWORKER_INVALID_DEFINITION", `invalid worker definition: unknown field ${JSON.stringify(unknown[0])}`);
  const missing = FIELDS.filter((field) => !Object.prototype.hasOwnProperty.call(value, field));
  if (missing.length > 0) throw makeError(TypeError, "ERR_BGWORKER_INVALID_DEFINITION", `invalid worker definition: field ${JSON.stringify(missing[0])} is missing`);

  for (const field of ["name", "type", "library", "function"] as const) expect(value, field, "string");
  for (const field of ["startTime", "notifyPid"] as const) expect(value, field, "number");
  for (const field of ["spi", "shmem"] as const) expect(value, field, "boolean");
  if (value.restartTimeMs !== null && typeof value.restartTimeMs !== "number") {
    throw invalid("restartTimeMs", value.restartTimeMs, "must be null or a number of milliseconds");
  }
  const argument = datumFromWire(value.argument);
  const extra = extraFromWire(value.extra);

  return rebuild(() => {
    const builder = new BackgroundWorkerBuilder(value.name as string)
      .setType(value.type as string)
      .setLibrary(value.library as string)
      .setFunction(value.function as string);
    // enableSpiAccess moves the start time, so the explicit start time must be applied after it.
    if (value.spi === true) builder.enableSpiAccess();
    builder
      .setStartTime(value.startTime as number)
      .setRestartTime(value.restartTimeMs as number | null)
      .setArgument(argument)
      .setExtra(extra)
      .setNotifyPid(value.notifyPid as number);
    if (value.shmem === true) builder.enableShmemAccess();
    if (value.scope !== undefined) builder.setScope(value.scope as WorkerScope);
    return definitionOf(builder);
  });
}
