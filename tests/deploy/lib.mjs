// Shared helpers of the deploy/ checks (run by ctest, see CMakeLists.txt):
// a tiny check harness, YAML loading, the Dockerfile's stages, the server's
// flag defaults and health service names, and Kubernetes schema validation.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const rel = (p) => path.relative(ROOT, p);
export const read = (p) => fs.readFileSync(path.resolve(ROOT, p), "utf8");
export const exists = (p) => fs.existsSync(path.resolve(ROOT, p));

// Dependencies come from the repository's package.json (npm install).
export async function need(specifier) {
  try {
    return await import(specifier);
  } catch (e) {
    if (e.code === "ERR_MODULE_NOT_FOUND") {
      console.error(`missing npm package for ${specifier}: run \`npm install\` in ${ROOT}`);
      process.exit(1);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Harness: named checks, "ok"/"not ok" lines, a closing "N passed, N failed".
const results = [];
export function check(name, fn) {
  try {
    const detail = fn();
    results.push({ name, ok: true });
    console.log(`ok - ${name}${detail ? ` (${detail})` : ""}`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`not ok - ${name}\n    ${String(e.message ?? e).split("\n").join("\n    ")}`);
  }
}
export function finish() {
  const failed = results.filter((r) => !r.ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
export const SKIP = 77; // ctest SKIP_RETURN_CODE
export function skip(why) {
  console.log(`skipped: ${why}`);
  process.exit(SKIP);
}
export function assert(cond, message) {
  if (!cond) throw new Error(message);
}
export function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: got ${a}, want ${e}`);
}

// Command-line arguments: --name=value.
export function args() {
  const out = {};
  for (const a of process.argv.slice(2)) {
    const m = /^--([\w-]+)=(.*)$/s.exec(a);
    if (!m) throw new Error(`unexpected argument ${a}`);
    out[m[1]] = m[2];
  }
  return out;
}

// ---------------------------------------------------------------------------
// YAML: every document of a file, strictly (duplicate keys, warnings fail).
export async function loadYaml(file) {
  const YAML = await need("yaml");
  const docs = YAML.parseAllDocuments(read(file), { uniqueKeys: true, prettyErrors: true });
  const problems = [];
  for (const d of docs) {
    for (const e of [...d.errors, ...d.warnings]) problems.push(e.message);
  }
  if (problems.length) throw new Error(`${file}: ${problems.join("; ")}`);
  return docs.map((d) => d.toJS({ maxAliasCount: 100 })).filter((d) => d !== null);
}

export function listFiles(dir, pred) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(path.resolve(ROOT, d), { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (pred(p)) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}
export const isYaml = (p) => /\.ya?ml$/.test(p);

// ---------------------------------------------------------------------------
// Dockerfile: global ARG defaults and stages, each with its instructions.
// Values are unquoted; JSON-form instructions carry `json` (the exec form).
export async function parseDockerfile(file = "Dockerfile") {
  const { DockerfileParser } = await need("dockerfile-ast");
  const df = DockerfileParser.parse(read(file));
  const globalArgs = {};
  const stages = [];
  let stage = null;
  for (const ins of df.getInstructions()) {
    const keyword = ins.getKeyword();
    const argv = ins.getArguments().map((a) => a.getValue());
    const flags = (ins.getFlags?.() ?? []).map((f) => f.toString());
    const entry = { keyword, argv, flags, text: ins.getTextContent(), line: ins.getRange().start.line + 1 };
    if (typeof ins.getJSONStrings === "function" && ins.getJSONStrings().length) {
      entry.json = ins.getJSONStrings().map((s) => s.getJSONValue());
    }
    if (keyword === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.getArgumentsContent().trim());
      stage = { name: m?.[2] ?? String(stages.length), base: m?.[1], instructions: [], line: entry.line };
      stages.push(stage);
      continue;
    }
    if (!stage) {
      if (keyword === "ARG") {
        for (const a of argv) {
          const [k, ...v] = a.split("=");
          globalArgs[k] = v.join("=");
        }
      }
      continue;
    }
    stage.instructions.push(entry);
  }
  return { globalArgs, stages, stage: (name) => stages.find((s) => s.name === name) };
}

export function expandArgs(text, vars) {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => {
    const k = a ?? b;
    if (!(k in vars)) throw new Error(`\${${k}} has no default`);
    return vars[k];
  });
}

// HEALTHCHECK [options] CMD ["exec", "form"]: the options and the command.
export function parseHealthcheck(ins) {
  const m = /^HEALTHCHECK\s+((?:--\S+\s+)*)CMD\s+(.*)$/s.exec(ins.text.replace(/\\\n/g, " "));
  if (!m) throw new Error(`line ${ins.line}: HEALTHCHECK without CMD`);
  const options = {};
  for (const o of m[1].trim().split(/\s+/).filter(Boolean)) {
    const [k, v] = o.replace(/^--/, "").split("=");
    options[k] = v;
  }
  let command;
  try {
    command = JSON.parse(m[2].trim());
  } catch {
    throw new Error(`line ${ins.line}: HEALTHCHECK CMD is not in exec (JSON) form`);
  }
  return { options, command };
}

// ---------------------------------------------------------------------------
// The server: flag defaults from `alibi-server --helpfull` (the built binary)
// or, when there is none, from server/main.cc's ABSL_FLAG definitions.
export function serverFlags(binary) {
  if (binary) {
    let text;
    try {
      text = execFileSync(binary, ["--helpfull"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      // Abseil's --helpfull exits 1 after printing the usage.
      text = `${e.stdout ?? ""}${e.stderr ?? ""}`;
    }
    const flags = parseHelpfull(text);
    if (!Object.keys(flags).length) throw new Error(`${binary} --helpfull listed no flags`);
    return { source: `${path.basename(binary)} --helpfull`, flags };
  }
  return { source: "server/main.cc ABSL_FLAG", flags: parseAbslFlags(read("server/main.cc")) };
}

// Abseil's usage text: `    --name (help text); default: value;` (help may
// wrap onto further lines), grouped under "Flags from <source file>:". Only
// the flags defined under server/ are kept (not Abseil's own).
export function parseHelpfull(text) {
  const flags = {};
  let section = "";
  const entries = [];
  for (const line of text.split("\n")) {
    const s = /^\s{2}Flags from (\S+):/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    if (/^\s{4}--\w+ /.test(line)) entries.push({ section, text: line.trim() });
    else if (entries.length && /^\s{6,}\S/.test(line)) entries[entries.length - 1].text += " " + line.trim();
  }
  for (const { section: sec, text: t } of entries) {
    if (!/(^|\/)server\//.test(sec)) continue;
    const m = /^--(\w+) \(.*\); default: (.*);$/s.exec(t);
    if (!m) continue;
    flags[m[1]] = unquote(m[2]);
  }
  return flags;
}

export function parseAbslFlags(source) {
  const flags = {};
  const re = /ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,\s*("(?:[^"\\]|\\.)*"|[^,]+?)\s*,/g;
  for (const m of source.matchAll(re)) flags[m[1]] = unquote(m[2].trim());
  return flags;
}
const unquote = (v) => (/^".*"$/s.test(v) ? JSON.parse(v) : v);

// `--name=value` arguments (the server's only form in our manifests).
export function flagArgs(list) {
  const out = {};
  for (const a of list) {
    const m = /^--(\w+)=(.*)$/s.exec(a);
    if (!m) throw new Error(`argument ${JSON.stringify(a)} is not of the form --name=value`);
    out[m[1]] = m[2];
  }
  return out;
}

// gRPC health service names the server serves: "" and each service of the
// public API, "<package>.<Service>", read from the proto.
export function healthServices() {
  const proto = read("proto/alibi/v1/inference.proto");
  const pkg = /^package\s+([\w.]+)\s*;/m.exec(proto)?.[1];
  const services = [...proto.matchAll(/^service\s+(\w+)\s*\{/gm)].map((m) => `${pkg}.${m[1]}`);
  if (!pkg || !services.length) throw new Error("no package/service in inference.proto");
  return ["", ...services];
}

// ---------------------------------------------------------------------------
// Kubernetes objects against the Kubernetes OpenAPI schemas (kubernetes-models;
// the Prometheus Operator's CRD schemas for monitoring.coreos.com), plus a
// TypeScript compile of every object typed with the same models, which rejects
// fields the API does not have (the JSON schemas accept unknown fields; the
// API server with strict field validation does not).
const MODELS = {
  "v1/Service": ["kubernetes-models/v1", "Service"],
  "v1/ServiceAccount": ["kubernetes-models/v1", "ServiceAccount"],
  "rbac.authorization.k8s.io/v1/Role": ["kubernetes-models/rbac.authorization.k8s.io/v1", "Role"],
  "rbac.authorization.k8s.io/v1/RoleBinding": ["kubernetes-models/rbac.authorization.k8s.io/v1", "RoleBinding"],
  "v1/PersistentVolumeClaim": ["kubernetes-models/v1", "PersistentVolumeClaim"],
  "v1/ConfigMap": ["kubernetes-models/v1", "ConfigMap"],
  "apps/v1/Deployment": ["kubernetes-models/apps/v1", "Deployment"],
  "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1", "PodDisruptionBudget"],
  "autoscaling/v2/HorizontalPodAutoscaler": ["kubernetes-models/autoscaling/v2", "HorizontalPodAutoscaler"],
  "monitoring.coreos.com/v1/ServiceMonitor": [
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
    "ServiceMonitor",
  ],
};

// Custom resources of the Gateway API and its Inference Extension, which
// kubernetes-models does not know: JSON schemas of the fields our manifests
// may use, after the projects' CRDs (inference.networking.k8s.io v1,
// gateway.networking.k8s.io v1), closed to other fields.
const DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const LABELS = { type: "object", additionalProperties: { type: "string", maxLength: 63 } };
const METADATA = {
  type: "object", required: ["name"], additionalProperties: false,
  properties: { name: { type: "string", pattern: DNS_LABEL, maxLength: 253 }, namespace: { type: "string" },
    labels: LABELS, annotations: LABELS },
};
const PORT = { type: "integer", minimum: 1, maximum: 65535 };
const CRDS = {
  "inference.networking.k8s.io/v1/InferencePool": {
    type: "object", required: ["apiVersion", "kind", "metadata", "spec"], additionalProperties: false,
    properties: {
      apiVersion: { const: "inference.networking.k8s.io/v1" }, kind: { const: "InferencePool" }, metadata: METADATA,
      spec: {
        type: "object", required: ["selector", "targetPorts"], additionalProperties: false,
        properties: {
          selector: {
            type: "object", required: ["matchLabels"], additionalProperties: false,
            properties: { matchLabels: { ...LABELS, minProperties: 1, maxProperties: 64 } },
          },
          targetPorts: {
            type: "array", minItems: 1, maxItems: 8,
            items: { type: "object", required: ["number"], additionalProperties: false,
              properties: { number: PORT } },
          },
          appProtocol: { enum: ["http", "kubernetes.io/h2c"] },
          endpointPickerRef: {
            type: "object", required: ["name"], additionalProperties: false,
            properties: {
              group: { type: "string" }, kind: { type: "string" }, name: { type: "string", minLength: 1 },
              port: { type: "object", required: ["number"], additionalProperties: false, properties: { number: PORT } },
              failureMode: { enum: ["FailOpen", "FailClose"] },
            },
          },
        },
      },
    },
  },
  "gateway.networking.k8s.io/v1/HTTPRoute": {
    type: "object", required: ["apiVersion", "kind", "metadata", "spec"], additionalProperties: false,
    properties: {
      apiVersion: { const: "gateway.networking.k8s.io/v1" }, kind: { const: "HTTPRoute" }, metadata: METADATA,
      spec: {
        type: "object", additionalProperties: false,
        properties: {
          parentRefs: {
            type: "array", maxItems: 32,
            items: { type: "object", required: ["name"], additionalProperties: false,
              properties: { group: { type: "string" }, kind: { type: "string" }, name: { type: "string" },
                namespace: { type: "string" }, sectionName: { type: "string" }, port: PORT } },
          },
          hostnames: { type: "array", items: { type: "string" } },
          rules: {
            type: "array", maxItems: 16,
            items: {
              type: "object", additionalProperties: false,
              properties: {
                matches: {
                  type: "array",
                  items: { type: "object", additionalProperties: false, properties: {
                    path: { type: "object", additionalProperties: false, properties: {
                      type: { enum: ["Exact", "PathPrefix", "RegularExpression"] }, value: { type: "string" } } },
                    method: { type: "string" } } },
                },
                backendRefs: {
                  type: "array",
                  items: { type: "object", required: ["name"], additionalProperties: false,
                    properties: { group: { type: "string" }, kind: { type: "string" }, name: { type: "string" },
                      namespace: { type: "string" }, port: PORT, weight: { type: "integer", minimum: 0 } } },
                },
                timeouts: { type: "object", additionalProperties: false,
                  properties: { request: { type: "string" }, backendRequest: { type: "string" } } },
              },
            },
          },
        },
      },
    },
  },
};
export const isCustomResource = (obj) => `${obj?.apiVersion}/${obj?.kind}` in CRDS;

export async function validateObject(obj) {
  const key = `${obj?.apiVersion}/${obj?.kind}`;
  if (key in CRDS) {
    const { default: Ajv } = await need("ajv");
    const validate = new Ajv({ allErrors: true, strict: true }).compile(CRDS[key]);
    if (!validate(obj)) {
      throw new Error(validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`).join("; "));
    }
    return `${key} (CRD fields)`;
  }
  const model = MODELS[key];
  if (!model) throw new Error(`no schema known for ${key}`);
  const mod = await need(model[0]);
  const instance = new mod[model[1]](obj);
  instance.validate();
  return key;
}

// Type-checks objects with tsc: [{label, obj}] -> list of error lines.
export async function typecheckObjects(items) {
  const ts = await need("typescript");
  const tsApi = ts.default ?? ts;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "alibi-k8s-types-"));
  try {
    let src = "";
    const imports = new Set();
    // Custom resources have no TypeScript models: their closed JSON schemas
    // (validateObject) reject unknown fields instead.
    items.filter(({ obj }) => !isCustomResource(obj)).forEach(({ label, obj }, i) => {
      const key = `${obj.apiVersion}/${obj.kind}`;
      const model = MODELS[key];
      if (!model) throw new Error(`${label}: no schema known for ${key}`);
      const typeName = `I${model[1]}`;
      const alias = `T${i}`;
      imports.add(`import type { ${typeName} as ${alias} } from "${model[0]}/${model[1]}";`);
      src += `// ${label}\nexport const o${i}: ${alias} = ${JSON.stringify(obj, null, 2)};\n`;
    });
    const file = path.join(dir, "objects.ts");
    fs.writeFileSync(file, `${[...imports].join("\n")}\n${src}`);
    const program = tsApi.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
      module: tsApi.ModuleKind.NodeNext,
      moduleResolution: tsApi.ModuleResolutionKind.NodeNext,
      baseUrl: ROOT,
      paths: { "*": [path.join(ROOT, "node_modules/*")] },
    });
    const diags = tsApi.getPreEmitDiagnostics(program);
    const text = fs.readFileSync(file, "utf8").split("\n");
    return diags.map((d) => {
      const msg = tsApi.flattenDiagnosticMessageText(d.messageText, "\n");
      if (!d.file) return msg;
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      // Name the object: the nearest "// label" comment above the line.
      let label = "";
      for (let l = line; l >= 0; l--) {
        if (text[l]?.startsWith("// ")) {
          label = text[l].slice(3);
          break;
        }
      }
      return `${label}: ${msg} (near: ${text[line]?.trim()})`;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
