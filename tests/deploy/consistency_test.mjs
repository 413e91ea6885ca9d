// Ports, health service names, flags and shutdown timing agree across the
// Dockerfile, deploy/compose.yaml, deploy/prometheus, deploy/grafana and
// deploy/k8s, and with the server itself: its flag defaults come from
// `alibi-server --helpfull` (--server=PATH; server/main.cc's ABSL_FLAGs when no
// binary was built), its health services from the API proto.
import path from "node:path";
import {
  args, assert, assertEqual, check, exists, finish, flagArgs, healthServices, loadYaml, parseDockerfile,
  parseHealthcheck, read, serverFlags,
} from "./lib.mjs";

const { flags: defaults, source } = serverFlags(args().server);
const SERVICES = healthServices();
const MARGIN_S = 10; // seconds a drain budget must leave before SIGKILL
const ANY_ADDRESS = ["0.0.0.0", "::", "[::]"];

check(`server flag defaults from ${source}`, () => {
  for (const f of ["port", "metrics_port", "http_port", "host", "metrics_host", "http_host", "drain_seconds", "model",
    "device"]) {
    assert(f in defaults, `no --${f} flag`);
  }
  return `port ${defaults.port}, metrics_port ${defaults.metrics_port}, http_port ${defaults.http_port}, ` +
    `drain_seconds ${defaults.drain_seconds}`;
});
check("health services from proto/alibi/v1/inference.proto", () => SERVICES.map((s) => JSON.stringify(s)).join(", "));

// The server's effective settings under a list of --name=value arguments,
// every one of which must be a flag the server has.
function effective(argList, where) {
  const given = flagArgs(argList);
  for (const name of Object.keys(given)) assert(name in defaults, `${where}: --${name} is not a server flag`);
  const e = { ...defaults, ...given };
  for (const k of ["port", "metrics_port", "http_port", "drain_seconds"]) e[k] = Number(e[k]);
  return e;
}
const seconds = (d) => {
  const m = /^(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(String(d));
  assert(m && (m[1] || m[2]), `duration ${d}`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
};

// --- Dockerfile -----------------------------------------------------------
const df = await parseDockerfile();
const images = {};
for (const t of ["cpu", "cuda"]) {
  const stage = df.stage(t);
  const get = (k) => stage.instructions.filter((i) => i.keyword === k);
  let e;
  check(`Dockerfile ${t}: ENTRYPOINT/CMD flags are server flags; it listens on every interface`, () => {
    const entry = get("ENTRYPOINT")[0].json;
    const cmd = get("CMD")[0]?.json ?? [];
    e = effective([...entry.slice(1), ...cmd], `Dockerfile ${t}`);
    images[t] = e;
    assert(ANY_ADDRESS.includes(e.host), `--host ${e.host}`);
    assert(ANY_ADDRESS.includes(e.metrics_host), `--metrics_host ${e.metrics_host}`);
    assert(ANY_ADDRESS.includes(e.http_host), `--http_host ${e.http_host}`);
    assertEqual(e.device, t === "cpu" ? "cpu" : "cuda", "--device");
    return [...entry, ...cmd].join(" ");
  });
  if (!e) continue;
  check(`Dockerfile ${t}: EXPOSE is the gRPC, metrics and HTTP API ports`, () => {
    const exposed = get("EXPOSE").flatMap((i) => i.argv).map((p) => Number(p.replace(/\/tcp$/, ""))).sort();
    assertEqual(exposed, [e.port, e.metrics_port, e.http_port].sort(), "EXPOSE");
  });
  check(`Dockerfile ${t}: HEALTHCHECK is alibi-cli health on the gRPC port, a known service`, () => {
    const { command } = parseHealthcheck(get("HEALTHCHECK")[0]);
    assertEqual(command.slice(1, 4), ["health", "--address", `localhost:${e.port}`], "health command");
    const rest = command.slice(4);
    if (rest.length) {
      assertEqual(rest[0], "--service", "extra HEALTHCHECK argument");
      assert(SERVICES.includes(rest[1]), `--service ${rest[1]}`);
    }
    return command.join(" ");
  });
  check(`Dockerfile ${t}: --model (${e.model}) is the model the stage copies in`, () => {
    const workdir = get("WORKDIR").at(-1).argv[0];
    const model = path.posix.resolve(workdir, e.model);
    const copy = get("COPY").find((c) => !c.flags.some((f) => f.startsWith("--from")) &&
      path.posix.resolve(workdir, c.argv.at(-1)) === model);
    assert(copy, `nothing is copied to ${model}`);
    return `${copy.argv[0]} -> ${model}`;
  });
}

// --- compose + Prometheus + Grafana ---------------------------------------
const compose = (await loadYaml("deploy/compose.yaml"))[0];
const prom = (await loadYaml("deploy/prometheus/prometheus.yml"))[0];
const grafana = {
  datasources: (await loadYaml("deploy/grafana/provisioning/datasources/prometheus.yml"))[0],
  dashboards: (await loadYaml("deploy/grafana/provisioning/dashboards/alibi-serve.yml"))[0],
};
const server = compose.services["alibi-server"];
const target = images[server.build.target];
check("compose alibi-server: publishes the image's gRPC, metrics and HTTP API ports", () => {
  assert(target, `no image settings for target ${server.build.target}`);
  const e = server.command ? effective(server.command, "compose command") : target;
  const containerPorts = (server.ports ?? []).map((p) => Number(String(typeof p === "object" ? p.target : p)
    .split(":").at(-1).replace(/\/tcp$/, ""))).sort();
  assertEqual(containerPorts, [e.port, e.metrics_port, e.http_port].sort(), "container ports");
});
check("compose alibi-server: SIGTERM, and a stop grace period that outlasts the drain", () => {
  const e = server.command ? effective(server.command, "compose command") : target;
  assertEqual(server.stop_signal, "SIGTERM", "stop_signal");
  const grace = seconds(server.stop_grace_period);
  assert(e.drain_seconds + MARGIN_S <= grace,
    `drain ${e.drain_seconds} s + margin ${MARGIN_S} s > stop_grace_period ${grace} s`);
  return `drain ${e.drain_seconds} + margin ${MARGIN_S} <= ${grace}`;
});
check("Prometheus scrapes alibi-server's metrics port at /metrics", () => {
  const targets = prom.scrape_configs.flatMap((c) => (c.static_configs ?? []).flatMap((s) => s.targets)
    .map((t) => ({ t, path: c.metrics_path ?? "/metrics" })));
  const hit = targets.find(({ t }) => t === `alibi-server:${target.metrics_port}`);
  assert(hit, `no target alibi-server:${target.metrics_port} in ${targets.map((x) => x.t)}`);
  assertEqual(hit.path, "/metrics", "metrics_path");
  assert("alibi-server" in compose.services, "no compose service alibi-server");
  assert(compose.services.prometheus.volumes.some((v) => v.startsWith("./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml")),
    "prometheus.yml is not mounted at /etc/prometheus/prometheus.yml");
});
check("Grafana: datasource is the prometheus service; dashboards mounted where the provider reads", () => {
  const ds = grafana.datasources.datasources.find((d) => d.type === "prometheus");
  const url = new URL(ds.url);
  assert(url.hostname in compose.services, `datasource host ${url.hostname} is not a compose service`);
  assertEqual(url.port, "9090", "Prometheus port");
  const provider = grafana.dashboards.providers[0].options.path;
  const mounts = Object.fromEntries(compose.services.grafana.volumes.map((v) => v.split(":").slice(0, 2).reverse()));
  assertEqual(mounts[provider], "./grafana/dashboards", `mount at ${provider}`);
  assertEqual(mounts["/etc/grafana/provisioning"], "./grafana/provisioning", "provisioning mount");
  const home = compose.services.grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
  if (home) {
    assert(home.startsWith(`${provider}/`) && exists(`deploy/grafana/dashboards/${path.basename(home)}`),
      `home dashboard ${home}`);
  }
});

// --- Kubernetes -----------------------------------------------------------
const k8s = {};
for (const f of ["deployment", "service", "servicemonitor", "pdb", "hpa"]) {
  k8s[f] = (await loadYaml(`deploy/k8s/base/${f}.yaml`))[0];
}
const pod = k8s.deployment.spec.template;
const container = pod.spec.containers.find((c) => c.name === "alibi-server");
const podLabels = pod.metadata.labels;
const selects = (selector) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
let ke;
check("k8s Deployment: args are server flags; container ports are the server's", () => {
  ke = effective(container.args ?? [], "deployment args");
  const ports = Object.fromEntries(container.ports.map((p) => [p.name, p.containerPort]));
  assertEqual(ports, { grpc: ke.port, metrics: ke.metrics_port, http: ke.http_port }, "container ports");
  return (container.args ?? []).join(" ");
});
if (ke) {
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    check(`k8s Deployment: ${probe} is a native gRPC probe on the gRPC port, a known health service`, () => {
      const p = container[probe];
      assert(p?.grpc, `no grpc ${probe}`);
      assertEqual(p.grpc.port, ke.port, `${probe} port`);
      assert(SERVICES.includes(p.grpc.service ?? ""), `${probe} service ${JSON.stringify(p.grpc.service)}`);
      return `service ${JSON.stringify(p.grpc.service ?? "")}`;
    });
  }
  check("k8s Deployment: preStop + drain_seconds + margin < terminationGracePeriodSeconds", () => {
    const pre = container.lifecycle?.preStop;
    const preStop = pre?.sleep ? Number(pre.sleep.seconds)
      : Number(/^(\/bin\/)?sleep$/.test(pre?.exec?.command?.[0] ?? "") ? pre.exec.command[1] : NaN);
    assert(Number.isFinite(preStop) && preStop > 0, `preStop ${JSON.stringify(pre)} is not a sleep`);
    const grace = pod.spec.terminationGracePeriodSeconds;
    assert(preStop + ke.drain_seconds + MARGIN_S < grace,
      `preStop ${preStop} + drain ${ke.drain_seconds} + margin ${MARGIN_S} >= grace ${grace}`);
    return `${preStop} + ${ke.drain_seconds} + ${MARGIN_S} < ${grace}`;
  });
  check("k8s Deployment: liveness cannot restart a pod during preStop + drain", () => {
    const l = container.livenessProbe;
    const window = (l.periodSeconds ?? 10) * (l.failureThreshold ?? 3);
    const preStop = Number(container.lifecycle.preStop.exec?.command?.[1] ?? container.lifecycle.preStop.sleep?.seconds);
    assert(window >= preStop + ke.drain_seconds, `liveness fails after ${window} s < preStop + drain`);
    return `${window} s`;
  });
  check("k8s Deployment: one NVIDIA GPU, the CUDA backend, the image's non-root user", () => {
    assertEqual(String(container.resources.limits["nvidia.com/gpu"]), "1", "GPU limit");
    assertEqual(ke.device, "cuda", "--device");
    const user = df.stage("cuda").instructions.filter((i) => i.keyword === "USER").at(-1).argv[0].split(":")[0];
    assertEqual(String(pod.spec.securityContext.runAsUser), user, "runAsUser vs the image's USER");
    assert(pod.spec.securityContext.runAsNonRoot === true, "runAsNonRoot");
  });
  check("k8s Deployment: --model lies on a mounted volume", () => {
    const m = (container.volumeMounts ?? []).find((v) => ke.model.startsWith(`${v.mountPath}/`));
    assert(m, `--model=${ke.model} is on no volume mount`);
    return `${m.name} at ${m.mountPath}`;
  });
}
check("k8s Service: headless, selects the pods, ports reach the container's gRPC, metrics and HTTP ports", () => {
  const svc = k8s.service;
  assertEqual(svc.spec.clusterIP, "None", "clusterIP");
  assert(selects(svc.spec.selector), "selector does not match the pod labels");
  const byName = Object.fromEntries(container.ports.map((p) => [p.name, p.containerPort]));
  for (const p of svc.spec.ports) {
    const tp = typeof p.targetPort === "string" ? byName[p.targetPort] : p.targetPort ?? p.port;
    assert(tp !== undefined, `Service port ${p.name}: no container port ${p.targetPort}`);
    assertEqual(p.port, tp, `Service port ${p.name} (same number as the container's)`);
  }
  assertEqual(svc.spec.ports.map((p) => byName[p.targetPort] ?? p.targetPort).sort(),
    [ke.port, ke.metrics_port, ke.http_port].sort(), "Service ports");
});
check("k8s ServiceMonitor: selects the Service, scrapes its metrics port at /metrics", () => {
  const sm = k8s.servicemonitor;
  const svcLabels = k8s.service.metadata.labels;
  assert(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => svcLabels[k] === v),
    "selector does not match the Service's labels");
  const ep = sm.spec.endpoints[0];
  const port = k8s.service.spec.ports.find((p) => p.name === ep.port);
  assert(port, `no Service port named ${ep.port}`);
  assertEqual(port.port, ke.metrics_port, "scraped port");
  assertEqual(ep.path ?? "/metrics", "/metrics", "path");
});
check("k8s PodDisruptionBudget and HPA target these pods", () => {
  assert(selects(k8s.pdb.spec.selector.matchLabels), "PDB selector");
  const ref = k8s.hpa.spec.scaleTargetRef;
  assertEqual([ref.kind, ref.name], ["Deployment", k8s.deployment.metadata.name], "scaleTargetRef");
  assert(k8s.deployment.spec.replicas === undefined, "the Deployment sets replicas, which the HPA owns");
});
check("k8s HPA: scales on queue depth, a gauge the server exports, served by the adapter rule", () => {
  const metric = k8s.hpa.spec.metrics.find((m) => m.type === "Pods")?.pods.metric.name;
  assertEqual(metric, "alibi_num_requests_waiting", "Pods metric");
  assert(new RegExp(`"${metric}",\\s*T::kGauge`).test(read("server/metrics/metrics.cc")),
    `${metric} is not a gauge in server/metrics/metrics.cc`);
  return metric;
});
const adapter = (await loadYaml("deploy/k8s/examples/prometheus-adapter-values.yaml"))[0];
check("Prometheus Adapter example: its rule serves the HPA's metric per pod", () => {
  const metric = k8s.hpa.spec.metrics.find((m) => m.type === "Pods").pods.metric.name;
  const rule = adapter.rules.custom.find((r) => r.name?.as === metric);
  assert(rule, `no custom rule names ${metric}`);
  assert(rule.seriesQuery.startsWith(`${metric}{`), `seriesQuery ${rule.seriesQuery}`);
  assertEqual(rule.resources.overrides.pod?.resource, "pod", "pod override");
  assertEqual(rule.resources.overrides.namespace?.resource, "namespace", "namespace override");
  for (const t of ["<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"]) {
    assert(rule.metricsQuery.includes(t), `metricsQuery lacks ${t}`);
  }
});

// --- Inference gateway (Gateway API Inference Extension) ------------------
const gateway = {};
for (const f of ["inferencepool", "endpoint-picker", "httproute"]) {
  gateway[f] = await loadYaml(`deploy/k8s/inference-gateway/${f}.yaml`);
}
const pool = gateway.inferencepool[0];
const epp = gateway["endpoint-picker"].find((o) => o.kind === "Deployment");
const eppService = gateway["endpoint-picker"].find((o) => o.kind === "Service");
const eppArgs = epp.spec.template.spec.containers[0].args;
const eppFlag = (name) => {
  const hit = eppArgs.map((a) => /^--([\w-]+)=(.*)$/s.exec(a)).find((m) => m?.[1] === name);
  assert(hit, `the endpoint picker has no --${name}=... argument`);
  return hit[2];
};
check("InferencePool: selects the server pods on the HTTP API port (which serves /metrics)", () => {
  assert(ke, "no Deployment settings");
  assert(selects(pool.spec.selector.matchLabels), "selector does not match the server's pod labels");
  assertEqual(pool.spec.targetPorts.map((p) => p.number), [ke.http_port], "targetPorts");
  const metricsPath = eppFlag("model-server-metrics-path");
  assertEqual(metricsPath, "/metrics", "--model-server-metrics-path");
  return `port ${ke.http_port}`;
});
check("InferencePool: its endpoint picker is the picker's Service and ext-proc port, for this pool", () => {
  const ref = pool.spec.endpointPickerRef;
  assertEqual(ref.name, eppService.metadata.name, "endpointPickerRef.name");
  const grpcPort = eppService.spec.ports.find((p) => p.name === "grpc");
  assertEqual(ref.port.number, grpcPort.port, "endpointPickerRef.port");
  assertEqual(Number(eppFlag("grpc-port")), grpcPort.port, "--grpc-port");
  assertEqual(eppFlag("pool-name"), pool.metadata.name, "--pool-name");
  const podLabels = epp.spec.template.metadata.labels;
  assert(Object.entries(eppService.spec.selector).every(([k, v]) => podLabels[k] === v), "picker Service selector");
  assert(!selects(eppService.spec.selector), "the picker's Service also selects the model servers");
});
check("endpoint picker: its metric flags name alibi-serve gauges with vLLM's semantics", () => {
  const metrics = read("server/metrics/metrics.cc");
  const gauge = (name) => new RegExp(`"${name}",\\s*T::kGauge`).test(metrics);
  const want = {
    "total-queued-requests-metric": "alibi_num_requests_waiting",
    "total-running-requests-metric": "alibi_num_requests_running",
    "kv-cache-usage-percentage-metric": "alibi_kv_cache_usage_ratio",
  };
  for (const [flag, family] of Object.entries(want)) {
    assertEqual(eppFlag(flag), family, `--${flag}`);
    assert(gauge(family), `${family} is not a gauge in server/metrics/metrics.cc`);
  }
  // No LoRA adapters and no cache-config family: those scrapes are off.
  assertEqual(eppFlag("lora-info-metric"), "", "--lora-info-metric");
  assertEqual(eppFlag("cache-info-metric"), "", "--cache-info-metric");
  return Object.values(want).join(", ");
});
check("HTTPRoute: sends the OpenAI API paths to the InferencePool", () => {
  const route = gateway.httproute[0];
  const refs = route.spec.rules.flatMap((r) => r.backendRefs);
  assert(refs.some((b) => b.kind === "InferencePool" && b.group === "inference.networking.k8s.io" &&
    b.name === pool.metadata.name), "no backendRef to the pool");
  const prefixes = route.spec.rules.flatMap((r) => r.matches ?? []).map((m) => m.path?.value);
  assert(prefixes.some((p) => "/v1/completions".startsWith(p) && "/v1/chat/completions".startsWith(p)),
    `paths ${prefixes}`);
});

finish();
