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

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port }, () => server.close(() => resolve(true)));
  });
}

/**
 * `count` consecutive loopback ports that could all be bound a moment ago,
 * for a part that takes a port and the next ones (npm start's apiservers).
 * Chosen below the kernel's ephemeral range, where outgoing connections
 * (and freePort) never take a port between this check and the bind.
 */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (32_000 - 20_000 - count));
    let free = true;
    for (let port = base; port < base + count && free; port++) free = await canListen(port);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports found between 20000 and 32000`);
}
