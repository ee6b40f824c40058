"""The driver that runs a model's JavaScript program inside a sandbox, in QuickJS (programmatic tool calling).

The server sends this file's text as a cell to a sandbox session (so it never runs in the server process) with
the program's spec in the session's workspace; the cell writes the outcome next to it.  A program is the body
of an async function: it calls tools as ``await tools.name(arguments)`` and returns its result.

A tool call cannot wait for the client inside one run, so a program is *replayed*: each run starts from the
beginning with the outputs of the calls made so far (in the order the program made them), and a call without an
output yet gives a promise that never settles.  When the program can go no further, the calls still open are its
outcome (``pending``); the client answers them and the next run goes past them.  A replay is faithful only when
the program is deterministic: ``Math.random`` is seeded and ``Date`` stands still at the program's first run, and
a run that calls a different tool, or the same with other arguments, where the record says otherwise, fails.

Standard library and ``quickjs`` only: it is not imported by the server.
"""

import json

MAX_ERROR_LINES = 12

PRELUDE = r"""
(() => {
  let state = %(seed)d >>> 0;
  Math.random = () => {  // mulberry32: the same numbers in every run of the program
    state = (state + 0x6D2B79F5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const RealDate = Date, now = %(now)d;
  globalThis.Date = class extends RealDate {
    constructor(...args) { if (args.length === 0) super(now); else super(...args); }
    static now() { return now; }
  };
  const logs = [];
  globalThis.__parley_logs = logs;
  const show = (v) => typeof v === "string" ? v : JSON.stringify(v);
  globalThis.console = {log: (...a) => { logs.push(a.map(show).join(" ")); }};
  console.error = console.warn = console.info = console.log;
  const tools = {};
  for (const [name, kind] of Object.entries(%(tools)s)) {
    tools[name] = (value) => {
      let args;
      if (kind === "custom") {
        args = String(value ?? "");
      } else {
        if (value !== undefined && (value === null || typeof value !== "object" || Array.isArray(value)))
          return Promise.reject(new TypeError(`tools.${name} takes one object of arguments`));
        args = JSON.stringify(value ?? {});
      }
      const output = __parley_call(name, args);
      return output === null ? new Promise(() => {}) : Promise.resolve(output);
    };
  }
  globalThis.tools = Object.freeze(tools);
  globalThis.__parley_outcome = null;
})();
"""

EPILOGUE = r"""
.then((value) => { __parley_outcome = {ok: true, value: value === undefined ? null : value,
                                       undefined: value === undefined}; },
      (error) => { __parley_outcome = {ok: false,
                                       error: String(error) + (error && error.stack ? `\n${error.stack}` : "")}; });
"""


def run(spec: dict) -> dict:
    """The outcome of one run of ``spec`` (code, tools, recorded calls, seed, now and limits)."""
    import quickjs  # (here, not at the top: the server reads this file as text)

    recorded, pending, made, problems = spec["recorded"], [], [0], []

    def call(name: str, arguments: str) -> str | None:
        if name not in spec["tools"] or not isinstance(arguments, str):
            problems.append(f"The program called a tool it was not given ({name!r}).")
            return None
        index = made[0]
        made[0] += 1
        if index < len(recorded):
            earlier = recorded[index]
            if earlier["name"] != name or earlier["arguments"] != arguments:
                problems.append(f"The program is not deterministic: its call {index + 1} was "
                                f"tools.{earlier['name']}({earlier['arguments']}) when it ran before, and "
                                f"tools.{name}({arguments}) now.")
                return None
            return earlier["output"]
        if made[0] > spec["max_calls"]:
            problems.append(f"The program made more than {spec['max_calls']} tool calls.")
            return None
        pending.append({"name": name, "arguments": arguments})
        return None

    context = quickjs.Context()
    context.set_memory_limit(spec["memory_bytes"])
    context.set_max_stack_size(1024 * 1024)
    context.add_callable("__parley_call", call)
    try:
        context.eval(PRELUDE % {"seed": spec["seed"], "now": spec["now"], "tools": json.dumps(spec["tools"])})
        context.eval("(async () => {\n" + spec["code"] + "\n})()" + EPILOGUE)
        while context.execute_pending_job():
            pass
        outcome = json.loads(context.eval("JSON.stringify(__parley_outcome)"))
        logs = json.loads(context.eval("JSON.stringify(__parley_logs)"))
    except quickjs.JSException as exc:  # a syntax error, or a limit (memory, stack) reached
        return {"status": "failed", "result": "\n".join(str(exc).splitlines()[:MAX_ERROR_LINES])}
    if problems:
        return {"status": "failed", "result": "Error: " + problems[0]}
    if outcome is None:
        if pending:
            return {"status": "pending", "calls": pending}
        return {"status": "failed", "result": "Error: the program waited for something that never happens (a "
                                             "promise that never settles)."}
    if not outcome["ok"]:
        lines = outcome["error"].splitlines()
        shown = lines[:MAX_ERROR_LINES] + ([f"    ... ({len(lines) - MAX_ERROR_LINES} more lines)"]
                                           if len(lines) > MAX_ERROR_LINES else [])
        return {"status": "failed", "result": "\n".join(shown)}
    value = outcome["value"]
    if outcome["undefined"]:
        result = "\n".join(logs)
    else:
        result = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return {"status": "completed", "result": result}


def main(spec_path: str, outcome_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    try:
        outcome = run(spec)
    except MemoryError:
        outcome = {"status": "failed", "result": "Error: the program ran out of memory."}
    with open(outcome_path, "w", encoding="utf-8") as handle:
        json.dump(outcome, handle)
