/**
 * The Node.js lines bgworker runs on. The package's entry point and the CLI import this module first, so that
 * an older Node stops at once with one line on stderr (exit status 1) rather than a stack trace from deep
 * inside (SPEC §2; package.json's `engines`).
 */
export const SUPPORTED_NODE_LINES: readonly number[] = [20, 22, 24, 26];

const major = Number(process.versions.node.split(".")[0]);
if (major < (SUPPORTED_NODE_LINES[0] ?? 0)) {
  process.stderr.write(`bgworker: Node.js ${process.versions.node} is too old: bgworker runs on Node.js 20, 22, 24 and 26\n`);
  process.exit(1);
}
