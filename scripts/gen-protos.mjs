// Gathers third-party protos from node_modules (never committed) next to our
// own `proto/` and runs `buf generate` over both. Output is a build product in
// proto/gen/, ignored by git.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, join } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const thirdParty = join(root, ".gen", "protos");

function patchFile(path, edit) {
  const before = readFileSync(path, "utf8");
  const after = edit(before);
  if (after === before) throw new Error(`proto patch did not apply to ${path}; the shipped file changed`);
  writeFileSync(path, after);
}

// Copies each file and, transitively, every file it imports (except
// google/protobuf/*, which buf provides) from the first search root that has it.
function gatherWithImports(files, searchRoots) {
  const pending = [...files];
  const seen = new Set();
  while (pending.length > 0) {
    const file = pending.pop();
    if (seen.has(file) || file.startsWith("google/protobuf/")) continue;
    seen.add(file);
    const source = searchRoots.map((dir) => join(dir, file)).find((path) => existsSync(path));
    if (!source) throw new Error(`proto ${file} is not shipped in ${searchRoots.join(", ")}`);
    const text = readFileSync(source, "utf8");
    mkdirSync(dirname(join(thirdParty, file)), { recursive: true });
    writeFileSync(join(thirdParty, file), text);
    for (const match of text.matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)) pending.push(match[1]);
  }
}

function hashInputs(paths) {
  const hash = createHash("sha256");
  const visit = (path) => {
    if (!existsSync(path)) return;
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path).sort()) visit(join(path, entry));
    } else {
      hash.update(path.slice(root.length)).update(readFileSync(path));
    }
  };
  paths.forEach(visit);
  return hash.digest("hex");
}

function packageDir(name) {
  return dirname(require.resolve(`${name}/package.json`));
}

rmSync(thirdParty, { recursive: true, force: true });
mkdirSync(thirdParty, { recursive: true });

// Envoy's xDS API, as @grpc/grpc-js-xds ships it (with xds, googleapis and
// protoc-gen-validate). Only the files the control plane builds, plus what
// they import: the rest of the shipped tree references protos not shipped.
const xdsDeps = join(packageDir("@grpc/grpc-js-xds"), "deps");
const xdsRoots = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((tree) => join(xdsDeps, tree));
const envoyApi = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/extensions/transport_sockets/tls/v3/secret.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/wasm/v3/wasm.proto",
  "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
  "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
  "envoy/extensions/access_loggers/file/v3/file.proto",
  // etcd's rpc.proto annotates its methods for grpc-gateway.
  "google/api/annotations.proto",
];
gatherWithImports(envoyApi, xdsRoots);

// The shipped Envoy API predates the Wasm plugin's failure_policy (Envoy
// 1.32+); declare it with Envoy's own field number and enum values, so the
// control plane can ask Envoy to reload a VM that trapped.
patchFile(join(thirdParty, "envoy", "extensions", "wasm", "v3", "wasm.proto"), (text) =>
  text
    .replace(/(message PluginConfig \{)/, "enum FailurePolicy {\n  UNSPECIFIED = 0;\n  FAIL_RELOAD = 1;\n  FAIL_CLOSED = 2;\n  FAIL_OPEN = 3;\n}\n\n$1")
    .replace(/(\n {2}bool fail_open = 5;)/, "$1\n\n  FailurePolicy failure_policy = 7;"),
);

// The shipped protoc-gen-validate predates `ignore_empty` on StringRules,
// which current Envoy protos set; declare it with PGV's own field number.
patchFile(join(thirdParty, "validate", "validate.proto"), (text) =>
  text.replace(/(message StringRules \{)/, "$1\n    optional bool ignore_empty = 26;"),
);

// etcd's v3 API as the etcd3 client ships it. The files import each other as
// "./kv.proto" and use google.api.http without importing it; place them where
// etcd's own tree has them and add the missing import.
const etcdProto = join(packageDir("etcd3"), "proto");
const etcdLayout = {
  "rpc.proto": "etcd/api/etcdserverpb/rpc.proto",
  "kv.proto": "etcd/api/mvccpb/kv.proto",
  "auth.proto": "etcd/api/authpb/auth.proto",
};
for (const [file, target] of Object.entries(etcdLayout)) {
  let text = readFileSync(join(etcdProto, file), "utf8");
  text = text
    .replace('import "./kv.proto";', 'import "etcd/api/mvccpb/kv.proto";')
    .replace('import "./auth.proto";', 'import "etcd/api/authpb/auth.proto";\nimport "google/api/annotations.proto";');
  mkdirSync(dirname(join(thirdParty, target)), { recursive: true });
  writeFileSync(join(thirdParty, target), text);
}

// Generation takes a while; skip it when nothing that feeds it changed.
const genDir = join(root, "proto", "gen");
const stampFile = join(genDir, ".inputs-sha256");
const inputsHash = hashInputs([thirdParty, join(root, "proto", "wharf"), join(root, "buf.gen.yaml"), join(root, "buf.yaml"), join(packageDir("@bufbuild/protoc-gen-es"), "package.json")]);
if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === inputsHash) {
  console.log("gen: proto/gen is up to date");
  process.exit(0);
}

rmSync(genDir, { recursive: true, force: true });
const bin = join(root, "node_modules", ".bin");
if (!existsSync(join(bin, "buf"))) throw new Error("buf is missing: run `npm install` first");
// buf finds protoc-gen-es on PATH.
const env = { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH}` };
execFileSync(join(bin, "buf"), ["generate"], { cwd: root, stdio: "inherit", env });
writeFileSync(stampFile, inputsHash);
