/** The state machine's events that answer with a result, as the tests use them: the result beside the actions. */
import type { WorkerDefinition } from "../../src/definition.js";
import type { HandleRef } from "../../src/handle-format.js";
import { renderEvent } from "../../src/log-events.js";
import type { Action, PostmasterMachine, RestartTarget } from "../../src/postmaster/machine.js";

export function launch(m: PostmasterMachine, definition: WorkerDefinition): { ref: HandleRef; actions: Action[] } {
  const { actions, result } = m.handle({ kind: "launch", definition });
  return { ref: result, actions };
}

export function terminatePid(m: PostmasterMachine, pid: number): { found: boolean; actions: Action[] } {
  const { actions, result } = m.handle({ kind: "terminate", target: { pid } });
  return { found: result, actions };
}

export function restart(m: PostmasterMachine, target: RestartTarget): { matched: number; actions: Action[] } {
  const { actions, result } = m.handle({ kind: "restart", target });
  return { matched: result, actions };
}

/** The text of each log action, as the log would show it. */
export function logLines(actions: readonly Action[]): string[] {
  return actions.flatMap((action) => (action.type === "log" ? [renderEvent(action.event)] : []));
}
