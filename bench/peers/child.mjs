// The message-passing peer of the benchmark: a plain Node script (no tsx, no bgworker), forked cold.
//   hello        sends "started" at once, then stays until disconnected
//   pingpong     answers every message with the same message
//   count N      after "go", sends N increment messages to the parent
const [mode, arg] = process.argv.slice(2);
if (mode === "hello") {
  process.send({ t: "started" });
} else if (mode === "pingpong") {
  process.on("message", (m) => process.send(m));
} else if (mode === "count") {
  const n = Number(arg);
  process.on("message", (m) => {
    if (m.t !== "go") return;
    for (let i = 0; i < n; i++) process.send({ t: "inc" });
    process.send({ t: "done" });
  });
  process.send({ t: "ready" });
}
process.on("disconnect", () => process.exit(0));
