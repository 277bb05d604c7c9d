/** What the TLS tests share: the test certificate, and the ClientHellos Node's own client sends. */
import { readFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { connect as tlsConnect } from "node:tls";

/** A self-signed certificate for api.example.com: the canned internet's HTTPS side. */
export const TEST_TLS = {
  key: readFileSync(new URL("./fixtures/api.example.com.key", import.meta.url), "utf8"),
  cert: readFileSync(new URL("./fixtures/api.example.com.pem", import.meta.url), "utf8"),
};

/** The first bytes Node's TLS client sends, as a server sees them. */
export async function realClientHello(servername: string): Promise<Buffer> {
  let bytes = Buffer.alloc(0);
  const server = createServer((socket) => {
    socket.on("data", (chunk: Buffer) => (bytes = Buffer.concat([bytes, chunk])));
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const client = tlsConnect({ host: "127.0.0.1", port: (server.address() as AddressInfo).port, servername });
  client.on("error", () => undefined);
  await new Promise((resolve) => setTimeout(resolve, 200));
  client.destroy();
  await new Promise((resolve) => server.close(resolve));
  return bytes;
}
