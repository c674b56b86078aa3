/** The control socket: protocol, server (the postmaster's end) and client (`connect()`). */
export { connect, PostmasterClient } from "./client.js";
export type { ControlHandler } from "./handler.js";
export { MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError } from "./protocol.js";
export { ControlServer, type ControlServerOptions } from "./server.js";
export { defaultSocketPath, MAX_SOCKET_PATH_BYTES } from "./socket-path.js";
export { definitionFromWire } from "./wire-definition.js";
