import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { wasmPath } from "@wharf/filters";
import { freePort, renderTemplate, repoRoot, startEnvoy, type Envoy } from "@wharf/testkit";

describe("Envoy from envoy/minimal.yaml with the hello filter", () => {
  let envoy: Envoy;
  let listenUrl: string;

  beforeAll(async () => {
    const [adminPort, listenPort] = [await freePort(), await freePort()];
    const bootstrap = await renderTemplate(join(repoRoot, "envoy", "minimal.yaml"), {
      ADMIN_PORT: adminPort,
      LISTEN_PORT: listenPort,
      WASM_PATH: wasmPath("hello"),
    });
    envoy = await startEnvoy({ bootstrap, adminPort });
    listenUrl = `http://127.0.0.1:${listenPort}`;
  });

  afterAll(async () => {
    await envoy?.stop();
  });

  it("answers LIVE on /ready", async () => {
    const response = await fetch(`${envoy.adminUrl}/ready`);
    expect(response.status).toBe(200);
    expect((await response.text()).trim()).toBe("LIVE");
  });

  it("runs the module in V8: the filter's response header is present", async () => {
    const response = await fetch(`${listenUrl}/anything`);
    expect(response.status).toBe(200);
    expect(response.headers.get("x-wharf-filter")).toBe("hello");
  });

  it("created the VM on the V8 runtime and logged from it", async () => {
    const stats = await (await fetch(`${envoy.adminUrl}/stats?filter=wasm`)).text();
    const active = /wasm\.envoy\.wasm\.runtime\.v8\.active: (\d+)/.exec(stats);
    expect(active, stats).not.toBeNull();
    expect(Number(active?.[1])).toBeGreaterThan(0);
    expect(envoy.process.logTail(200)).toContain("wharf hello filter: vm started");
  });
});
