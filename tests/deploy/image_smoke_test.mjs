// The CPU image's runtime contract, without a Docker engine: the built
// alibi-server runs with the Dockerfile's ENTRYPOINT + CMD from a working
// directory laid out like the image's WORKDIR (models/alibi-tiny-en beside
// it), the Dockerfile's HEALTHCHECK command (the built alibi-cli) reports
// healthy within the start period, /metrics serves the queue gauge, the
// OpenAI-compatible API answers on its port (/health, /v1/models, /metrics),
// and the STOPSIGNAL makes the server exit 0 within its drain budget.
//
// Ports: the image uses the defaults (50051, 9464, 8000); on a shared test
// machine the server binds free ports instead (--port=0 --metrics_port=0
// --http_port=0) and the
// health check's address is rewritten to the port it got. When the repository's
// models/alibi-tiny-en is not a complete checkpoint yet, the fixture
// tests/data/models/tiny-bloom stands in (and the test says so).
//
//   image_smoke_test.mjs --server=PATH --cli=PATH
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { args, assert, check, finish, flagArgs, parseDockerfile, parseHealthcheck, ROOT } from "./lib.mjs";

const given = args();
assert(given.server && given.cli, "usage: image_smoke_test.mjs --server=PATH --cli=PATH");
const server = path.resolve(given.server);
const cli = path.resolve(given.cli);
const df = await parseDockerfile();
const stage = df.stage("cpu");
const last = (k) => stage.instructions.filter((i) => i.keyword === k).at(-1);
const entry = last("ENTRYPOINT").json;
const cmd = last("CMD").json;
const health = parseHealthcheck(last("HEALTHCHECK"));
const signal = last("STOPSIGNAL").argv[0];
const startPeriod = Number(/^(\d+)s$/.exec(health.options["start-period"] ?? "60s")[1]);

// The image's WORKDIR, with the default model where the image has it.
const work = fs.mkdtempSync(path.join(os.tmpdir(), "alibi-image-smoke-"));
const baked = path.join(ROOT, "models/alibi-tiny-en");
const complete = ["config.json", "tokenizer.json"].every((f) => fs.existsSync(path.join(baked, f))) &&
  fs.existsSync(baked) && fs.readdirSync(baked).some((f) => f.endsWith(".safetensors"));
fs.mkdirSync(path.join(work, "models"));
fs.symlinkSync(complete ? baked : path.join(ROOT, "tests/data/models/tiny-bloom"),
  path.join(work, "models/alibi-tiny-en"));
if (!complete) console.log("# models/alibi-tiny-en is not complete yet: using tests/data/models/tiny-bloom");

const portFile = path.join(work, "ports.json");
const logFile = path.join(work, "server.log");
const argv = [...entry.slice(1), ...cmd, "--port=0", "--metrics_port=0", "--http_port=0",
  `--port_file=${portFile}`];
const log = fs.openSync(logFile, "w");
const proc = spawn(server, argv, { cwd: work, stdio: ["ignore", log, log] });
let exited = null;
const exitPromise = new Promise((resolve) => {
  proc.on("exit", (code, sig) => {
    exited = { code, sig };
    resolve(exited);
  });
  proc.on("error", (e) => {
    exited = { error: e.message };
    resolve(exited);
  });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const showLog = () => fs.readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n");

async function main() {
  let ports = null;
  for (let i = 0; i < 600 && !ports && !exited; i++) {
    if (fs.existsSync(portFile)) {
      try {
        ports = JSON.parse(fs.readFileSync(portFile, "utf8"));
      } catch {
        // partially written
      }
    }
    if (!ports) await sleep(100);
  }
  check("alibi-server starts with the image's ENTRYPOINT and CMD", () => {
    assert(ports, `no port file (exit ${JSON.stringify(exited)}):\n${showLog()}`);
    return `${entry[0]} ${[...entry.slice(1), ...cmd].join(" ")}`;
  });
  if (!ports) return;

  const probe = health.command.slice(1).map((a) => a.replace(/^localhost:\d+$/, `localhost:${ports.port}`));
  let healthy = false;
  const deadline = Date.now() + startPeriod * 1000;
  while (!healthy && !exited && Date.now() < deadline) {
    healthy = spawnSync(cli, probe, { timeout: 10000 }).status === 0;
    if (!healthy) await sleep(250);
  }
  check(`the HEALTHCHECK command reports healthy within the start period (${startPeriod} s)`, () => {
    assert(healthy, `alibi-cli ${probe.join(" ")} never exited 0:\n${showLog()}`);
    return `alibi-cli ${probe.join(" ")}`;
  });

  const get = (port, urlPath) => new Promise((resolve) => {
    http.get({ host: "127.0.0.1", port, path: urlPath }, (res) => {
      let s = "";
      res.on("data", (d) => (s += d));
      res.on("end", () => resolve({ status: res.statusCode, body: s }));
    }).on("error", (e) => resolve({ status: 0, body: `error: ${e.message}` }));
  });
  const { body } = await get(ports.metrics_port, "/metrics");
  check("/metrics on the metrics port serves the queue-depth gauge the HPA uses", () => {
    assert(/^alibi_num_requests_waiting\{/m.test(body), `no alibi_num_requests_waiting in:\n${body.slice(0, 300)}`);
  });
  const api = {
    health: await get(ports.http_port, "/health"),
    models: await get(ports.http_port, "/v1/models"),
    metrics: await get(ports.http_port, "/metrics"),
  };
  check("the OpenAI-compatible API answers on its port: /health, /v1/models, and /metrics for the gateway", () => {
    assert(api.health.status === 200, `/health: ${api.health.status} ${api.health.body}`);
    const models = JSON.parse(api.models.body);
    assert(models.data?.[0]?.id === "alibi-tiny-en", `/v1/models: ${api.models.body.slice(0, 200)}`);
    assert(/^alibi_kv_cache_usage_ratio\{/m.test(api.metrics.body), "no alibi_kv_cache_usage_ratio on the API port");
    return `port ${ports.http_port}`;
  });

  const drain = Number(flagArgs([...entry.slice(1), ...cmd]).drain_seconds ?? 10);
  const t0 = Date.now();
  proc.kill(signal);
  const result = await Promise.race([exitPromise, sleep((drain + 10) * 1000).then(() => null)]);
  check(`${signal} (STOPSIGNAL): the server drains and exits 0 within drain_seconds + 10 s`, () => {
    assert(result, `still running ${drain + 10} s after ${signal}`);
    assert(result.code === 0, `exit ${JSON.stringify(result)}:\n${showLog()}`);
    return `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  });
  check("the HEALTHCHECK command fails once the server is gone", () => {
    assert(spawnSync(cli, probe, { timeout: 10000 }).status !== 0, "alibi-cli health still exits 0");
  });
}

try {
  await main();
} finally {
  if (!exited) proc.kill("SIGKILL");
  fs.closeSync(log);
  fs.rmSync(work, { recursive: true, force: true });
}
finish();
