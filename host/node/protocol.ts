/** The node job contract lives with the dispatcher, which speaks it to both homes (this host, containers). */
export * from "../../src/node/protocol.ts";
