/**
 * The cluster fault harness's TCP relay (test/cluster-fault/relay.ts): it forwards both ways, and `pause()`
 * is a half-open partition: nothing is forwarded, nothing is closed, a connection made meanwhile is held,
 * and `resume()` carries everything on.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, connect, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { Relay } from "../cluster-fault/relay.js";

/** An echo server that counts what reached it. */
let echo: Server;
let received = 0;
let upstreamCloses = 0;

before(async () => {
  echo = createServer((socket) => {
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      socket.write(chunk);
    });
    socket.on("close", () => (upstreamCloses += 1));
    socket.on("error", () => undefined);
  });
  echo.listen(0, "127.0.0.1");
  await once(echo, "listening");
});

after(() => new Promise<void>((resolve) => echo.close(() => resolve())));

function echoPort(): number {
  const address = echo.address();
  assert.ok(address !== null && typeof address === "object");
  return address.port;
}

async function client(port: number): Promise<{ socket: Socket; data: () => string }> {
  const socket = connect({ host: "127.0.0.1", port });
  let text = "";
  socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
  await once(socket, "connect");
  return { socket, data: () => text };
}

const settle = (ms = 100): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(probe: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await settle(5);
  }
}

describe("the fault harness's TCP relay", () => {
  it("forwards both ways, holds everything while paused without closing, and carries it on after resume", async () => {
    const relay = await Relay.open({ host: "127.0.0.1", port: echoPort() });
    try {
      const a = await client(relay.port);
      a.socket.write("hello");
      await until(() => a.data() === "hello");

      relay.pause();
      const before = received;
      a.socket.write("during");
      const b = await client(relay.port); // accepted by the kernel, held
      b.socket.write("new");
      await settle(200);
      assert.equal(received, before, "nothing reaches the server while paused");
      assert.equal(a.data(), "hello");
      assert.equal(a.socket.destroyed, false, "the client's socket stays open");
      assert.equal(upstreamCloses, 0, "the server's socket stays open");

      relay.resume();
      await until(() => a.data() === "helloduring" && b.data() === "new");
      a.socket.destroy();
      b.socket.destroy();
      await until(() => upstreamCloses === 2);
    } finally {
      await relay.close();
    }
  });

  it("does not pass a close through a paused relay", async () => {
    const relay = await Relay.open({ host: "127.0.0.1", port: echoPort() });
    try {
      const closesBefore = upstreamCloses;
      const a = await client(relay.port);
      a.socket.write("x");
      await until(() => a.data() === "x");
      relay.pause();
      a.socket.destroy();
      await settle(200);
      assert.equal(upstreamCloses, closesBefore, "the server does not learn of the close through the partition");
      relay.resume();
      await until(() => upstreamCloses === closesBefore + 1);
    } finally {
      await relay.close();
    }
  });
});
