import { createServer } from "node:net";

/** A loopback port that was free a moment ago; the kernel picks it. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("could not read the port the kernel picked"));
        return;
      }
      server.close(() => resolvePort(address.port));
    });
  });
}
