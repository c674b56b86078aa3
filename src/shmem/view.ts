/**
 * The object a `PgLwLock` section receives: one accessor per field, reading and writing shared memory
 * directly. It is made once per lock and re-pointed when the mapping changes; its accessors check the
 * section mode on every access, so a view kept past its section, or written under `share()`, throws
 * instead of racing.
 */
import { fail, show } from "../errors.js";
import { SCALARS, type PlacedField, type PlacedLayout, type ScalarType } from "./layout.js";
import type { MappingViews } from "./state.js";

/** Section mode of a view. A plain object, not an enum, so that every TypeScript loader compiles it alike. */
export const Mode = { None: 0, Shared: 1, Exclusive: 2 } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];

/** Where the view reads: set by the lock before each section. */
export interface Binding {
  mode: Mode;
  /** Byte offset of the struct's data in the mapping. */
  base: number;
  views: MappingViews | undefined;
}

const SHIFT: Readonly<Record<1 | 2 | 4 | 8, number>> = { 1: 0, 2: 1, 4: 2, 8: 3 };
const INDEX = /^(0|[1-9][0-9]*)$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

type Reader = (views: MappingViews, at: number) => unknown;
type Writer = (views: MappingViews, at: number, value: unknown) => void;

function scalarReader(type: ScalarType): Reader {
  const shift = SHIFT[SCALARS[type].size];
  if (type === "bool") return (v, at) => v.u8[at] !== 0;
  const key = type;
  return (v, at) => v[key][at >>> shift];
}

function scalarWriter(type: ScalarType): Writer {
  const shift = SHIFT[SCALARS[type].size];
  switch (type) {
    case "bool":
      return (v, at, value) => void (v.u8[at] = value === true ? 1 : 0);
    case "u64":
    case "i64":
      return (v, at, value) => void (v[type][at >>> shift] = value as bigint);
    default:
      return (v, at, value) => void (v[type][at >>> shift] = value as number);
  }
}

/** Throws unless `value` fits the scalar type; `what` names the field (e.g. `field ring[3]`). */
function checkScalar(owner: string, what: string, type: ScalarType, value: unknown, caller: Function): void {
  const info = SCALARS[type];
  const where = `${owner}: ${what} ${show(value)}`;
  if (typeof value !== info.js) {
    fail(TypeError, `${where} must be a ${info.js} (${type})`, caller);
  }
  if (info.js === "boolean") return;
  if (info.integer && typeof value === "number" && !Number.isInteger(value)) {
    fail(RangeError, `${where} must be an integer (${type})`, caller);
  }
  if ((value as number | bigint) < info.min || (value as number | bigint) > info.max) {
    fail(RangeError, `${where} must be from ${info.min} to ${info.max} (${type})`, caller);
  }
}

/** Makes the struct view for `layout`, reading through `binding`. `owner` starts every error message. */
export function makeView(owner: string, layout: PlacedLayout, binding: Binding): object {
  const view = Object.create(null) as object;
  const views = (caller: Function): MappingViews => {
    if (binding.mode === Mode.None || binding.views === undefined) {
      fail(Error, `${owner}: the struct was used outside its share()/exclusive() section: read and write it only inside the section`, caller);
    }
    return binding.views;
  };
  const writable = (what: string, caller: Function): MappingViews => {
    const v = views(caller);
    if (binding.mode !== Mode.Exclusive) {
      fail(TypeError, `${owner}: ${what} is read-only in share(): write it inside exclusive()`, caller);
    }
    return v;
  };
  for (const field of layout.fields) {
    Object.defineProperty(view, field.name, { enumerable: true, ...accessors(owner, field, binding, views, writable) });
  }
  return Object.seal(view);
}

function accessors(
  owner: string,
  field: PlacedField,
  binding: Binding,
  views: (caller: Function) => MappingViews,
  writable: (what: string, caller: Function) => MappingViews,
): { get(): unknown; set(value: unknown): void } {
  const what = `field ${field.name}`;
  if (field.shape === "scalar") {
    const type = field.scalar!;
    const read = scalarReader(type);
    const write = scalarWriter(type);
    return {
      get: function get() {
        return read(views(get), binding.base + field.offset);
      },
      set: function set(value: unknown) {
        const v = writable(what, set);
        checkScalar(owner, what, type, value, set);
        write(v, binding.base + field.offset, value);
      },
    };
  }
  if (field.shape === "utf8") {
    return {
      get: function get() {
        const bytes = views(get).bytes;
        const start = binding.base + field.offset;
        const end = bytes.subarray(start, start + field.count).indexOf(0);
        return bytes.toString("utf8", start, end === -1 ? start + field.count : start + end);
      },
      set: function set(value: unknown) {
        const bytes = writable(what, set).bytes;
        if (typeof value !== "string") fail(TypeError, `${owner}: ${what} ${show(value)} must be a string (utf8)`, set);
        if (value.includes("\0")) fail(TypeError, `${owner}: ${what} ${show(value)} must not contain a NUL character`, set);
        if (LONE_SURROGATE.test(value)) {
          fail(TypeError, `${owner}: ${what} ${show(value)} must be well-formed Unicode (it has a lone surrogate)`, set);
        }
        const length = Buffer.byteLength(value);
        if (length > field.count) {
          fail(RangeError, `${owner}: ${what} of ${length} UTF-8 bytes must be at most ${field.count} bytes`, set);
        }
        const start = binding.base + field.offset;
        bytes.write(value, start, length, "utf8");
        bytes.fill(0, start + length, start + field.count);
      },
    };
  }
  const array = makeArray(owner, field, binding, views, writable);
  return {
    get: function get() {
      views(get);
      return array;
    },
    set: function set(value: unknown) {
      fail(TypeError, `${owner}: ${what} is an array: write its elements (${field.name}[i] = value), not ${show(value)}`, set);
    },
  };
}

function makeArray(
  owner: string,
  field: PlacedField,
  binding: Binding,
  views: (caller: Function) => MappingViews,
  writable: (what: string, caller: Function) => MappingViews,
): object {
  const type = field.scalar!;
  const size = SCALARS[type].size;
  const read = scalarReader(type);
  const write = scalarWriter(type);
  const last = field.count - 1;
  const element = (key: string, caller: Function): number => {
    const i = INDEX.test(key) ? Number(key) : -1;
    if (i < 0 || i > last) {
      fail(RangeError, `${owner}: field ${field.name} index ${i < 0 ? show(key) : key} must be an integer from 0 to ${last}`, caller);
    }
    return binding.base + field.offset + i * size;
  };
  const all = (v: MappingViews): unknown[] =>
    Array.from({ length: field.count }, (_, i) => read(v, binding.base + field.offset + i * size));
  return new Proxy(Object.create(null) as object, {
    get(_target, key) {
      if (key === "length") return field.count;
      if (key === Symbol.iterator) {
        return function iterator() {
          return all(views(iterator))[Symbol.iterator]();
        };
      }
      if (typeof key === "symbol") return undefined;
      const v = views(this.get!);
      return read(v, element(key, this.get!));
    },
    set(_target, key, value) {
      const name = typeof key === "symbol" ? key.toString() : key;
      const v = writable(`field ${field.name}[${name}]`, this.set!);
      if (typeof key === "symbol") fail(RangeError, `${owner}: field ${field.name} index ${name} must be an integer from 0 to ${last}`, this.set!);
      const at = element(key, this.set!);
      checkScalar(owner, `field ${field.name}[${key}]`, type, value, this.set!);
      write(v, at, value);
      return true;
    },
    has(_target, key) {
      return key === "length" || key === Symbol.iterator || (typeof key === "string" && INDEX.test(key) && Number(key) <= last);
    },
    defineProperty() {
      fail(TypeError, `${owner}: field ${field.name} is a fixed array: only its elements can be written`, Reflect.defineProperty);
    },
    deleteProperty() {
      fail(TypeError, `${owner}: field ${field.name} is a fixed array: its elements cannot be deleted`, Reflect.deleteProperty);
    },
  });
}
