// Renders the Kubernetes variants with `kubectl kustomize` (offline) and
// validates every rendered object as k8s_schema_test.mjs does the files:
//   deploy/k8s                    weights from the PersistentVolumeClaim
//   deploy/k8s/model-init         weights fetched by an init container into an emptyDir
//   deploy/k8s/inference-gateway  base/ behind an inference gateway (InferencePool, endpoint picker)
// Skips (ctest SKIP_RETURN_CODE) when kubectl is not installed.
import { execFileSync } from "node:child_process";
import { args, assert, check, finish, need, ROOT, skip, typecheckObjects, validateObject } from "./lib.mjs";

const kubectl = args().kubectl;
if (!kubectl) skip("kubectl not found (pass --kubectl=PATH)");
const YAML = await need("yaml");

function render(dir) {
  const out = execFileSync(kubectl, ["kustomize", `${ROOT}/${dir}`], {
    encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return YAML.parseAllDocuments(out).map((d) => d.toJS()).filter(Boolean);
}
const deploymentOf = (objs) => objs.find((o) => o.kind === "Deployment");
const serverOf = (objs) => objs.find((o) => o.kind === "Deployment" && o.metadata.name === "alibi-server");
const modelsVolume = (d) => d.spec.template.spec.volumes.find((v) => v.name === "models");

const rendered = {};
for (const dir of ["deploy/k8s", "deploy/k8s/model-init", "deploy/k8s/inference-gateway"]) {
  let objs = null;
  check(`kubectl kustomize ${dir}`, () => {
    objs = render(dir);
    rendered[dir] = objs;
    return objs.map((o) => o.kind).join(", ");
  });
  if (!objs) continue;
  const errors = [];
  for (const o of objs) {
    try {
      await validateObject(o);
    } catch (e) {
      errors.push(`${o.kind} ${o.metadata?.name}: ${e.message}`);
    }
  }
  errors.push(...(await typecheckObjects(objs.map((obj) => ({ label: `${dir}: ${obj.kind}`, obj })))));
  check(`${dir}: every rendered object validates and has only known fields`, () => {
    assert(!errors.length, errors.join("\n"));
    return `${objs.length} objects`;
  });
  check(`${dir}: the image is the registry's (kustomize images)`, () => {
    const image = serverOf(objs).spec.template.spec.containers[0].image;
    assert(/^[^:]+\/alibi-serve:\S+$/.test(image), `image ${image}`);
    return image;
  });
}

const base = rendered["deploy/k8s"];
if (base) {
  check("deploy/k8s: the models volume is the PersistentVolumeClaim it creates", () => {
    const claim = modelsVolume(deploymentOf(base)).persistentVolumeClaim?.claimName;
    assert(claim, "models volume is not a PVC");
    assert(base.some((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === claim), `no PVC ${claim}`);
    return claim;
  });
}
const init = rendered["deploy/k8s/model-init"];
if (init) {
  check("deploy/k8s/model-init: no PVC; an init container fills the emptyDir the server reads", () => {
    assert(!init.some((o) => o.kind === "PersistentVolumeClaim"), "a PersistentVolumeClaim is still rendered");
    const d = deploymentOf(init);
    const vol = modelsVolume(d);
    assert(vol.emptyDir && !vol.persistentVolumeClaim, `models volume ${JSON.stringify(vol)}`);
    const ic = d.spec.template.spec.initContainers ?? [];
    assert(ic.some((c) => (c.volumeMounts ?? []).some((m) => m.name === "models" && !m.readOnly)),
      "no init container writes the models volume");
    const mount = d.spec.template.spec.containers[0].volumeMounts.find((m) => m.name === "models");
    const model = d.spec.template.spec.containers[0].args.find((a) => a.startsWith("--model="));
    assert(model?.startsWith(`--model=${mount.mountPath}/`), `${model} is not under ${mount.mountPath}`);
  });
}
finish();
