/**
 * The public surface as users see it: the declarations reachable from dist/index.d.ts (what `npm run build`
 * emits and package.json's "types" names). Every export, every named type and every member a user can reach
 * from an export is walked with the TypeScript checker, and the set must be exactly an allowlist: SPEC's names
 * (§2-5, §8, and the status rows of §7 that §5 returns) plus the extras that docs/api.md documents. Anything
 * else reachable fails, so an internal type (a protocol message, a worker definition that skipped the
 * builder's checks, a handle's internals) cannot leak by being named in a public signature.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DIST = join(ROOT, "dist");
const INDEX = join(DIST, "index.d.ts");
const SOURCE = join(ROOT, "src", "index.ts");
const API_DOC = join(ROOT, "docs", "api.md");

/** Names of one part of the surface: exports, named types, and members as `Owner.member` (nested: `Owner.a.b`). */
interface Surface {
  readonly exports: readonly string[];
  readonly types: readonly string[];
  readonly members: readonly string[];
}

/** `Owner: member member ...` lines, so the lists below read as the API does. */
function members(table: Record<string, string>): string[] {
  return Object.entries(table).flatMap(([owner, names]) => names.split(/\s+/).filter(Boolean).map((name) => `${owner}.${name}`));
}

/** SPEC's contract. */
const SPEC: Surface = {
  exports: [
    // §2's import line
    "BackgroundWorkerBuilder", "BgWorkerStartTime", "BackgroundWorker", "SignalWakeFlags", "Spi", "DynamicBackgroundWorker",
    "BackgroundWorkerStatus", "PgAtomic", "PgLwLock", "pgShmemInit", "Postmaster", "connect",
    // §3, §5: the types and classes its signatures name
    "Datum", "BackgroundWorkerStatusError", "NoFreeWorkerSlotError", "TerminatingDynamicBackgroundWorker", "PostmasterClient",
    "WorkerStatusRow",
    // §2 Postmaster options, §6 restartBackoff and shutdown modes
    "PostmasterOptions", "RestartBackoff", "ShutdownMode",
    // §8: the layout a PgLwLock is declared with
    "Layout",
    // §10: cluster mode's scope and option
    "WorkerScope", "ClusterOption",
  ],
  types: [
    "BackgroundWorkerBuilder", "BgWorkerStartTime", "Datum", "SignalWakeFlags", "DynamicBackgroundWorker", "TerminatingDynamicBackgroundWorker",
    "BackgroundWorkerStatus", "BackgroundWorkerStatusError", "NoFreeWorkerSlotError", "PostmasterClient", "WorkerStatusRow",
    "PgAtomic", "PgLwLock", "Layout", "Postmaster", "PostmasterOptions", "RestartBackoff", "ShutdownMode",
    "WorkerScope", "ClusterOption",
  ],
  members: members({
    BackgroundWorkerBuilder:
      "new setType enableShmemAccess enableSpiAccess setStartTime setRestartTime setLibrary setFunction setArgument setExtra " +
      "setNotifyPid load loadDynamic setScope",
    BgWorkerStartTime: "PostmasterStart ConsistentState RecoveryFinished",
    BackgroundWorker:
      "getName getType getExtra getExtraBytes getArgument attachSignalHandlers sighupReceived sigtermReceived sigintReceived " +
      "sigchldReceived waitLatch setLatch postmasterIsAlive connectWorkerToSpi transaction getFencingToken",
    SignalWakeFlags: "SIGHUP SIGTERM SIGINT SIGCHLD",
    Spi: "run getOne select",
    BackgroundWorkerStatus: "Started NotYetStarted Stopped PostmasterDied Untracked",
    BackgroundWorkerStatusError: "status name code",
    NoFreeWorkerSlotError: "name code",
    DynamicBackgroundWorker: "notifyPid handle pid status waitForStartup waitForShutdown terminate",
    TerminatingDynamicBackgroundWorker: "handle waitForShutdown",
    PostmasterClient: "loadDynamic attach status terminate stop close",
    // §7's row: slot, name, type, pid, state, start time, restart time, restarts, last exit, notify pid,
    // static/dynamic, flags, backend pid, CPU and RSS; §6's backoff delay
    WorkerStatusRow:
      "slot name type pid state startTime restartTimeMs restarts lastExit notifyPid kind spi shmem backoffMs backendPid cpuSeconds rssBytes",
    Postmaster: "start stop status",
    PostmasterOptions: "extensions database maxWorkerProcesses socketPath shutdownTimeoutMs logFormat restartBackoff cluster",
    ClusterOption: "name nodeId leaseMs renewMs",
    RestartBackoff: "failures fastFailureMs initialDelayMs maxDelayMs resetAfterMs",
    PgAtomic: "get set add compareExchange",
    PgLwLock: "share exclusive",
  }),
};

/** Beyond SPEC: each of these is documented in docs/api.md (checked below). */
const EXTRAS: Surface = {
  exports: [
    "SpiError", "spiClient", "RawClient", "RawNotification", "RawQueryResult", "ProtocolError",
    "StatusReport", "PostmasterStatusRow", "LastExit", "WorkerState", "Phase",
    "DatabaseOption", "LogFormat", "LogLevel", "LogSink",
    "AtomicType", "AtomicValue", "ArrayField", "FieldType", "ScalarType", "Utf8Field", "SharedArrayView", "ReadonlySharedArrayView",
    "StructValue", "ReadonlyStructValue", "NotPromise", "ShmemStructure",
  ],
  types: [
    "SpiError", "RawClient", "RawNotification", "RawQueryResult", "ProtocolError",
    "StatusReport", "PostmasterStatusRow", "LastExit", "WorkerState", "Phase",
    "DatabaseOption", "LogFormat", "LogLevel", "LogSink",
    "AtomicType", "AtomicValue", "ArrayField", "FieldType", "ScalarType", "Utf8Field", "SharedArrayView", "ReadonlySharedArrayView",
    "StructValue", "ReadonlyStructValue", "NotPromise", "ShmemStructure",
  ],
  members: members({
    SpiError: "name code sqlstate severity detail hint position where schema table column constraint from",
    "SpiError.fields": "code severity detail hint position where schema table column constraint",
    "SpiError.options": "cause",
    RawClient: "query on off",
    RawQueryResult: "rows rowCount command fields",
    "RawQueryResult.fields": "name dataTypeID",
    RawNotification: "processId channel payload",
    ProtocolError: "name code",
    PostmasterClient: "socketPath postmasterId postmasterPid closed statusReport restart reload",
    "PostmasterClient.restart.target": "type",
    WorkerStatusRow: "handle uptimeMs scope fencingToken",
    LastExit: "code signal at",
    StatusReport: "postmaster workers",
    PostmasterStatusRow: "pid phase phaseReason database uptimeMs shmemBytes maxWorkerProcesses spares spares.count spares.ready spares.target spares.max spares.pssBytes shutdown cluster cluster.name cluster.nodeId",
    DatabaseOption: "url pgdata",
    Postmaster: "postmasterId pid reload onChange failure closed",
    PostmasterOptions: "logSink spareRunners maxSpareRunners cwd",
    PgAtomic: "name type",
    PgLwLock: "name layout",
    ArrayField: "array length",
    Utf8Field: "utf8",
    SharedArrayView: "length",
    ReadonlySharedArrayView: "length",
  }),
};

interface Reached {
  readonly exports: Set<string>;
  /** Named type → the path it was first reached by. */
  readonly types: Map<string, string>;
  /** `Owner.member` → the path it was first reached by. */
  readonly members: Map<string, string>;
}

const NAMED_TYPE = ts.SymbolFlags.Class | ts.SymbolFlags.Interface | ts.SymbolFlags.Enum | ts.SymbolFlags.TypeAlias;

/** Walks every type, member and signature reachable from the exports of `file`, stopping at library types. */
function reachable(file: string): Reached {
  const program = ts.createProgram([file], { strict: true, skipLibCheck: true, types: ["node"] });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  assert.ok(source, `${file} was not read`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  assert.ok(moduleSymbol, "dist/index.d.ts is not a module");
  const reached: Reached = { exports: new Set(), types: new Map(), members: new Map() };
  const seen = new Set<ts.Type>();

  const ours = (node: ts.Node): boolean => node.getSourceFile().fileName.startsWith(DIST);
  const fromOurFiles = (symbol: ts.Symbol | undefined): boolean => symbol?.declarations?.some(ours) ?? false;
  const isHidden = (symbol: ts.Symbol): boolean => {
    const flags = symbol.valueDeclaration === undefined ? 0 : ts.getCombinedModifierFlags(symbol.valueDeclaration);
    return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) !== 0 || symbol.name.startsWith("#") || symbol.name.startsWith("__#");
  };
  /** A symbol-keyed member's name as written (`[Symbol.iterator]`), not the checker's internal `__@iterator@N`. */
  const shown = (symbol: ts.Symbol): string => symbol.name.replace(/^__@(\w+)@\d+$/, "[$1]");

  /**
   * `Owner.member`, or `Owner.a.b` for a member of an inline object type: the owner is the declaration (class,
   * interface, alias, enum, variable, function) the member is written in, so the key does not depend on the
   * path that reached it.
   */
  const memberKey = (property: ts.Symbol): string | undefined => {
    const declaration = property.declarations?.find(ours);
    if (declaration === undefined) return undefined;
    const names = [shown(property)];
    for (let node: ts.Node | undefined = declaration.parent; node !== undefined; node = node.parent) {
      if (
        ts.isClassDeclaration(node) || ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node) ||
        ts.isEnumDeclaration(node) || ts.isVariableDeclaration(node) || ts.isFunctionDeclaration(node)
      ) {
        return [node.name?.getText() ?? "(anonymous)", ...names].join(".");
      }
      if ((ts.isPropertySignature(node) || ts.isPropertyDeclaration(node) || ts.isParameter(node) || ts.isMethodSignature(node) ||
        ts.isMethodDeclaration(node)) && ts.isIdentifier(node.name)) {
        names.unshift(node.name.text);
      }
    }
    return names.join(".");
  };

  const visitSignature = (signature: ts.Signature, path: string): void => {
    for (const parameter of signature.getParameters()) visit(checker.getTypeOfSymbol(parameter), `${path}(${parameter.name})`);
    visit(signature.getReturnType(), `${path}()`);
  };

  function visit(type: ts.Type, path: string): void {
    if (seen.has(type)) return;
    seen.add(type);
    for (const symbol of [type.aliasSymbol, type.getSymbol()]) {
      if (symbol !== undefined && (symbol.flags & NAMED_TYPE) !== 0 && fromOurFiles(symbol) && !reached.types.has(symbol.name)) {
        reached.types.set(symbol.name, path);
      }
    }
    for (const argument of type.aliasTypeArguments ?? []) visit(argument, `${path}<>`);
    if (type.isUnionOrIntersection()) for (const part of type.types) visit(part, path);
    if ((type.flags & ts.TypeFlags.Object) === 0) return;
    const object = type as ts.ObjectType;
    if ((object.objectFlags & ts.ObjectFlags.Reference) !== 0) {
      for (const argument of checker.getTypeArguments(object as ts.TypeReference)) visit(argument, `${path}<>`);
    }
    // Library types (Promise, Map, Uint8Array...) are walked through their arguments only.
    if (!fromOurFiles(type.getSymbol()) && type.aliasSymbol === undefined && (object.objectFlags & ts.ObjectFlags.Anonymous) === 0) return;
    for (const property of checker.getPropertiesOfType(type)) {
      if (isHidden(property)) continue;
      const key = memberKey(property);
      if (key !== undefined && !reached.members.has(key)) reached.members.set(key, `${path}.${property.name}`);
      visit(checker.getTypeOfSymbol(property), `${path}.${property.name}`);
    }
    for (const signature of type.getCallSignatures()) visitSignature(signature, path);
    for (const signature of type.getConstructSignatures()) {
      const declaration = signature.getDeclaration() as ts.Declaration | undefined;
      if (declaration !== undefined && (ts.getCombinedModifierFlags(declaration) & ts.ModifierFlags.Private) !== 0) continue;
      visitSignature(signature, `new ${path}`);
    }
  }

  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    reached.exports.add(exported.name);
    const symbol = (exported.flags & ts.SymbolFlags.Alias) !== 0 ? checker.getAliasedSymbol(exported) : exported;
    if ((symbol.flags & NAMED_TYPE) !== 0 && !reached.types.has(symbol.name)) reached.types.set(symbol.name, exported.name);
    if ((symbol.flags & ts.SymbolFlags.Value) !== 0) visit(checker.getTypeOfSymbol(symbol), exported.name);
    if ((symbol.flags & (ts.SymbolFlags.Type | ts.SymbolFlags.Class)) !== 0) visit(checker.getDeclaredTypeOfSymbol(symbol), exported.name);
  }
  return reached;
}

/** What is reached but not allowed (with the path that reaches it), and what is allowed but not reached. */
function compare(actual: Set<string> | Map<string, string>, allowed: readonly string[]): { unexpected: string[]; missing: string[] } {
  const names = actual instanceof Map ? [...actual.keys()] : [...actual];
  const allow = new Set(allowed);
  return {
    unexpected: names.filter((name) => !allow.has(name)).map((name) => (actual instanceof Map ? `${name} (via ${actual.get(name)})` : name)),
    missing: [...allow].filter((name) => !names.includes(name)),
  };
}

/** The code of docs/api.md: its inline code spans and fenced blocks, where documented names are written. */
function apiDocCode(): string {
  const text = readFileSync(API_DOC, "utf8");
  const fenced = [...text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((match) => match[1]);
  const inline = [...text.replace(/```[a-z]*\n[\s\S]*?```/g, "").matchAll(/`([^`\n]+)`/g)].map((match) => match[1]);
  return [...fenced, ...inline].join("\n");
}

describe("dist/index.d.ts: the public surface", () => {
  let reached: Reached;

  before(() => {
    // Build when the declarations are missing or older than the entry point's source.
    if (!existsSync(INDEX) || statSync(INDEX).mtimeMs < statSync(SOURCE).mtimeMs) {
      execFileSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(ROOT, "tsconfig.build.json")], { stdio: "inherit" });
    }
    reached = reachable(INDEX);
  });

  it("exports exactly SPEC's names and the documented extras", () => {
    assert.deepEqual(compare(reached.exports, [...SPEC.exports, ...EXTRAS.exports]), { unexpected: [], missing: [] });
  });

  it("reaches exactly SPEC's types and the documented extra types: no internal or protocol type leaks", () => {
    assert.deepEqual(compare(reached.types, [...SPEC.types, ...EXTRAS.types]), { unexpected: [], missing: [] });
  });

  it("reaches exactly SPEC's members and the documented extra members", () => {
    assert.deepEqual(compare(reached.members, [...SPEC.members, ...EXTRAS.members]), { unexpected: [], missing: [] });
  });

  it("documents every extra in docs/api.md", () => {
    const code = apiDocCode();
    const mentioned = (name: string): boolean => new RegExp(`(^|[^\\w$])${name.replace(/[[\]$]/g, "\\$&")}([^\\w$]|$)`, "m").test(code);
    const undocumented = [
      ...new Set([...EXTRAS.exports, ...EXTRAS.types]).values(),
    ].filter((name) => !mentioned(name));
    undocumented.push(
      ...EXTRAS.members.filter((key) => !mentioned(key.slice(key.lastIndexOf(".") + 1))).map((key) => `${key} (member)`),
    );
    assert.deepEqual(undocumented, []);
  });

  it("keeps SPEC's names apart from the extras (an extra that SPEC has is listed once)", () => {
    for (const part of ["exports", "types", "members"] as const) {
      const spec = new Set(SPEC[part]);
      assert.deepEqual(EXTRAS[part].filter((name) => spec.has(name)), [], part);
    }
  });

  it("the walk itself sees members, signatures and nested types (a check that finds nothing must be able to find something)", () => {
    assert.ok(reached.members.has("Postmaster.start"));
    assert.ok(reached.members.has("PostmasterClient.loadDynamic"));
    assert.ok(reached.members.has("RawQueryResult.fields.dataTypeID"), "a member of an inline object type");
    assert.ok(reached.types.has("StatusReport"));
    assert.ok(reached.types.has("WorkerStatusRow"), "reached through Postmaster.status()");
    assert.ok(reached.types.has("LastExit"), "reached through a member's type");
  });
});
