/**
 * Struct layouts of `PgLwLock`: the field types a layout may use, the JavaScript type each one reads as,
 * and how a layout is placed in bytes (C rules: declaration order, natural alignment).
 */
import { fail, show } from "../errors.js";

/** Scalar field types. 64-bit integers read as bigint, `bool` as boolean, the rest as number. */
export type ScalarType = "bool" | "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64" | "u64" | "i64";
/** A UTF-8 string of at most `utf8` bytes (stored NUL-padded in exactly that many bytes). */
export interface Utf8Field {
  readonly utf8: number;
}
/** A fixed-length array of a scalar type. */
export interface ArrayField {
  readonly array: ScalarType;
  readonly length: number;
}
export type FieldType = ScalarType | Utf8Field | ArrayField;
/** A struct layout: field name to field type, in the order the fields are placed. */
export type Layout = { readonly [field: string]: FieldType };

/** The JavaScript type of a scalar field. */
export type ScalarValue<S extends ScalarType> = S extends "u64" | "i64" ? bigint : S extends "bool" ? boolean : number;

/**
 * An array field inside an `exclusive()` section: index it to read and write elements in shared memory
 * (`s.ring[3] = 7`); `length`, `for…of` and spreading (`[...s.ring]`) work. It is live only during the section.
 */
export interface SharedArrayView<E> extends Iterable<E> {
  readonly length: number;
  [index: number]: E;
}
/** An array field inside a `share()` section: elements can be read, not written. */
export interface ReadonlySharedArrayView<E> extends Iterable<E> {
  readonly length: number;
  readonly [index: number]: E;
}

/** The JavaScript type of a field inside `exclusive()`. */
export type FieldValue<F extends FieldType> = F extends ScalarType
  ? ScalarValue<F>
  : F extends Utf8Field
    ? string
    : F extends ArrayField
      ? SharedArrayView<ScalarValue<F["array"]>>
      : never;
/** The JavaScript type of a field inside `share()`. */
export type ReadonlyFieldValue<F extends FieldType> = F extends ArrayField
  ? ReadonlySharedArrayView<ScalarValue<F["array"]>>
  : FieldValue<F>;

type ArrayKeys<L extends Layout> = { [K in keyof L]: L[K] extends ArrayField ? K : never }[keyof L];

/** The struct as `exclusive()` sees it: scalars and strings writable, arrays written element by element. */
export type StructValue<L extends Layout> = {
  -readonly [K in Exclude<keyof L, ArrayKeys<L>>]: FieldValue<L[K]>;
} & { readonly [K in ArrayKeys<L>]: FieldValue<L[K]> };
/** The struct as `share()` sees it: everything read-only. */
export type ReadonlyStructValue<L extends Layout> = { readonly [K in keyof L]: ReadonlyFieldValue<L[K]> };

/** Size, and the range a value must be in, of each scalar type. */
export interface ScalarInfo {
  readonly size: 1 | 2 | 4 | 8;
  /** "bigint" for 64-bit integers, "boolean" for bool, else "number". */
  readonly js: "number" | "bigint" | "boolean";
  readonly min: number | bigint;
  readonly max: number | bigint;
  readonly integer: boolean;
}

export const SCALARS: Readonly<Record<ScalarType, ScalarInfo>> = {
  bool: { size: 1, js: "boolean", min: 0, max: 1, integer: true },
  u8: { size: 1, js: "number", min: 0, max: 0xff, integer: true },
  i8: { size: 1, js: "number", min: -0x80, max: 0x7f, integer: true },
  u16: { size: 2, js: "number", min: 0, max: 0xffff, integer: true },
  i16: { size: 2, js: "number", min: -0x8000, max: 0x7fff, integer: true },
  u32: { size: 4, js: "number", min: 0, max: 0xffffffff, integer: true },
  i32: { size: 4, js: "number", min: -0x80000000, max: 0x7fffffff, integer: true },
  f32: { size: 4, js: "number", min: -Infinity, max: Infinity, integer: false },
  f64: { size: 8, js: "number", min: -Infinity, max: Infinity, integer: false },
  u64: { size: 8, js: "bigint", min: 0n, max: 2n ** 64n - 1n, integer: true },
  i64: { size: 8, js: "bigint", min: -(2n ** 63n), max: 2n ** 63n - 1n, integer: true },
};
const SCALAR_NAMES = Object.keys(SCALARS).join(", ");

/** Largest utf8 byte size and array length: a struct is read and written under one lock, so keep it small. */
export const MAX_FIELD_COUNT = 65_536;

/** A field placed in the struct. `offset` is from the start of the struct's data. */
export interface PlacedField {
  readonly name: string;
  /** The scalar stored (the element type of an array); undefined for utf8. */
  readonly scalar: ScalarType | undefined;
  /** Bytes of a utf8 field, elements of an array; 1 for a scalar. */
  readonly count: number;
  readonly shape: "scalar" | "utf8" | "array";
  readonly offset: number;
  readonly size: number;
}

export interface PlacedLayout {
  readonly fields: readonly PlacedField[];
  /** Bytes of the data, a multiple of `align`. */
  readonly size: number;
  readonly align: number;
  /** Canonical text of the layout, e.g. `{count:u64,label:utf8[32],ring:i32[8]}`. */
  readonly signature: string;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function isScalar(value: unknown): value is ScalarType {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(SCALARS, value);
}

function describeType(type: unknown): string {
  if (type !== null && typeof type === "object" && !Array.isArray(type)) {
    try {
      return JSON.stringify(type);
    } catch {
      return "object";
    }
  }
  return show(type);
}

function countRule(value: unknown): string | undefined {
  if (typeof value !== "number" || !Number.isInteger(value)) return "must be an integer";
  if (value < 1 || value > MAX_FIELD_COUNT) return `must be from 1 to ${MAX_FIELD_COUNT}`;
  return undefined;
}

/**
 * Checks `layout` and places its fields. `owner` (e.g. `PgLwLock "state"`) starts every error message;
 * `caller` is the public function the error's stack starts at.
 */
export function placeLayout(owner: string, layout: unknown, caller: Function): PlacedLayout {
  if (layout === null || typeof layout !== "object" || Array.isArray(layout)) {
    fail(TypeError, `${owner}: layout ${show(layout)} must be an object of field types, e.g. { count: "u64" }`, caller);
  }
  const names = Object.keys(layout);
  if (names.length === 0) fail(TypeError, `${owner}: layout must have at least one field`, caller);
  const fields: PlacedField[] = [];
  const parts: string[] = [];
  let offset = 0;
  let align = 1;
  for (const name of names) {
    if (!IDENTIFIER.test(name) || name === "__proto__") {
      fail(TypeError, `${owner}: field name ${show(name)} must be an identifier (letters, digits, _ and $, not starting with a digit)`, caller);
    }
    const type = (layout as Record<string, unknown>)[name];
    let placed: Omit<PlacedField, "offset" | "name">;
    let text: string;
    let fieldAlign: number;
    if (isScalar(type)) {
      const info = SCALARS[type];
      placed = { scalar: type, count: 1, shape: "scalar", size: info.size };
      fieldAlign = info.size;
      text = type;
    } else if (type !== null && typeof type === "object" && "utf8" in type) {
      const bytes = (type as { utf8: unknown }).utf8;
      const rule = countRule(bytes);
      if (rule !== undefined) fail(RangeError, `${owner}: field ${name} utf8 size ${show(bytes)} ${rule} (bytes)`, caller);
      placed = { scalar: undefined, count: bytes as number, shape: "utf8", size: bytes as number };
      fieldAlign = 1;
      text = `utf8[${bytes as number}]`;
    } else if (type !== null && typeof type === "object" && "array" in type) {
      const element = (type as { array: unknown }).array;
      const length = (type as { length?: unknown }).length;
      if (!isScalar(element)) {
        fail(TypeError, `${owner}: field ${name} array element type ${show(element)} must be one of ${SCALAR_NAMES}`, caller);
      }
      const rule = countRule(length);
      if (rule !== undefined) fail(RangeError, `${owner}: field ${name} array length ${show(length)} ${rule}`, caller);
      const info = SCALARS[element];
      placed = { scalar: element, count: length as number, shape: "array", size: info.size * (length as number) };
      fieldAlign = info.size;
      text = `${element}[${length as number}]`;
    } else {
      fail(
        TypeError,
        `${owner}: field ${name} type ${describeType(type)} must be one of ${SCALAR_NAMES}, { utf8: bytes } or { array: type, length: n }`,
        caller,
      );
    }
    offset = roundUp(offset, fieldAlign);
    fields.push({ name, offset, ...placed });
    parts.push(`${name}:${text}`);
    offset += placed.size;
    align = Math.max(align, fieldAlign);
  }
  return { fields, size: roundUp(offset, align), align, signature: `{${parts.join(",")}}` };
}

export function roundUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}
