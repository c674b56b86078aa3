/**
 * The public surface as users see it: the declarations reachable from dist/index.d.ts (what `npm run build`
 * emits and package.json's "types" names). Every type, member and signature a user can reach from an
 * export is walked with the TypeScript checker; none may be an internal one, so the postmaster's core
 * (definitions that skipped the builder's checks, handle internals, the control handler) cannot leak.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it, before } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const INDEX = join(ROOT, "dist", "index.d.ts");
const SOURCE = join(ROOT, "src", "index.ts");

/** Types of the core: never reachable from the public entry point. */
const INTERNAL_TYPES = [
  "WorkerDefinition",
  "ControlHandler",
  "HandleRef",
  "HandleState",
  "HandleBackend",
  "Launcher",
  "Requester",
  "RequestChannel",
  "PostmasterShell",
  "PostmasterMachine",
  "SocketTransport",
  "ControlServer",
  "WorkerRole",
  "StartMessage",
  "InitContext",
  "ProcessRole",
  "Runner",
  "Runners",
  "FrameDecoder",
  "EncodedDatum",
  "DynamicLauncher",
];
/** Members that would let a user bypass the builder or act as the control socket. */
const INTERNAL_MEMBERS = ["toDefinition", "clientGone", "launch", "definition", "handler", "machine"];

interface Reached {
  readonly types: Map<string, string>;
  readonly members: Map<string, string>;
}

function reachable(file: string): Reached {
  const program = ts.createProgram([file], { strict: true, skipLibCheck: true, types: ["node"] });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  assert.ok(source, `${file} was not read`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  assert.ok(moduleSymbol, "dist/index.d.ts is not a module");
  const types = new Map<string, string>();
  const members = new Map<string, string>();
  const seen = new Set<ts.Type>();

  const fromOurFiles = (symbol: ts.Symbol | undefined): boolean =>
    symbol?.declarations?.some((d) => d.getSourceFile().fileName.startsWith(join(ROOT, "dist"))) ?? false;

  const visitSignature = (signature: ts.Signature, path: string): void => {
    for (const parameter of signature.getParameters()) {
      visit(checker.getTypeOfSymbol(parameter), `${path}(${parameter.name})`);
    }
    visit(signature.getReturnType(), `${path}()`);
  };

  const isHidden = (symbol: ts.Symbol): boolean => {
    const flags = symbol.valueDeclaration === undefined ? 0 : ts.getCombinedModifierFlags(symbol.valueDeclaration);
    return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) !== 0 || symbol.name.startsWith("#") || symbol.name.startsWith("__#");
  };

  function visit(type: ts.Type, path: string): void {
    if (seen.has(type)) return;
    seen.add(type);
    for (const symbol of [type.aliasSymbol, type.getSymbol()]) {
      if (symbol !== undefined && fromOurFiles(symbol) && !types.has(symbol.name)) types.set(symbol.name, path);
    }
    for (const argument of type.aliasTypeArguments ?? []) visit(argument, `${path}<>`);
    if (type.isUnionOrIntersection()) for (const part of type.types) visit(part, path);
    if ((type.flags & ts.TypeFlags.Object) !== 0) {
      const object = type as ts.ObjectType;
      if ((object.objectFlags & ts.ObjectFlags.Reference) !== 0) {
        for (const argument of checker.getTypeArguments(object as ts.TypeReference)) visit(argument, `${path}<>`);
      }
      // Library types (Promise, Map, Uint8Array...) are walked through their arguments only.
      if (!fromOurFiles(type.getSymbol()) && type.aliasSymbol === undefined && (object.objectFlags & ts.ObjectFlags.Anonymous) === 0) return;
      for (const property of checker.getPropertiesOfType(type)) {
        if (isHidden(property)) continue;
        if (fromOurFiles(type.getSymbol())) members.set(`${type.getSymbol()?.name}.${property.name}`, `${path}.${property.name}`);
        visit(checker.getTypeOfSymbol(property), `${path}.${property.name}`);
      }
      for (const signature of type.getCallSignatures()) visitSignature(signature, path);
      for (const signature of type.getConstructSignatures()) {
        const declaration = signature.getDeclaration() as ts.Declaration | undefined;
        if (declaration !== undefined && (ts.getCombinedModifierFlags(declaration) & ts.ModifierFlags.Private) !== 0) continue;
        visitSignature(signature, `new ${path}`);
      }
    }
  }

  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = (exported.flags & ts.SymbolFlags.Alias) !== 0 ? checker.getAliasedSymbol(exported) : exported;
    types.set(symbol.name, exported.name);
    if ((symbol.flags & ts.SymbolFlags.Value) !== 0) visit(checker.getTypeOfSymbol(symbol), exported.name);
    if ((symbol.flags & (ts.SymbolFlags.Type | ts.SymbolFlags.Class)) !== 0) visit(checker.getDeclaredTypeOfSymbol(symbol), exported.name);
  }
  return { types, members };
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

  it("shows the SPEC's exports", () => {
    for (const name of [
      "BackgroundWorkerBuilder", "BgWorkerStartTime", "BackgroundWorker", "SignalWakeFlags", "Spi", "DynamicBackgroundWorker",
      "BackgroundWorkerStatus", "PgAtomic", "PgLwLock", "pgShmemInit", "Postmaster", "connect", "PostmasterClient",
    ]) {
      assert.ok(reached.types.has(name), `${name} is not exported`);
    }
  });

  it("reaches no internal type", () => {
    const leaked = INTERNAL_TYPES.filter((name) => reached.types.has(name)).map((name) => `${name} (via ${reached.types.get(name)})`);
    assert.deepEqual(leaked, []);
  });

  it("reaches no internal member: no way to launch a definition, act as the control socket or build a handle", () => {
    const leaked = [...reached.members.keys()].filter((key) => INTERNAL_MEMBERS.includes(key.slice(key.indexOf(".") + 1)));
    assert.deepEqual(leaked, []);
  });

  it("the walk itself sees members and signatures (a check that finds nothing must be able to find something)", () => {
    assert.ok(reached.members.has("Postmaster.start"));
    assert.ok(reached.members.has("PostmasterClient.loadDynamic"));
    assert.ok(reached.types.has("StatusReport"));
    assert.ok(reached.types.has("WorkerStatusRow"), "reached through Postmaster.status()");
  });
});
