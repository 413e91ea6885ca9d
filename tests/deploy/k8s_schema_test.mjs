// deploy/k8s: the kustomizations reference exactly the files that are there,
// and every object of base/ and inference-gateway/ validates against the
// Kubernetes OpenAPI schemas (kubernetes-models; the ServiceMonitor against the
// Prometheus Operator's CRD schema; InferencePool and HTTPRoute against closed
// schemas after their CRDs, lib.mjs) and type-checks against the same models,
// which rejects unknown fields. The rendered variants are checked by
// kustomize_build_test.mjs.
import path from "node:path";
import { assert, check, exists, finish, isYaml, listFiles, loadYaml, typecheckObjects, validateObject } from "./lib.mjs";

const KUSTOMIZATIONS = ["deploy/k8s", "deploy/k8s/base", "deploy/k8s/model-init", "deploy/k8s/inference-gateway"];
// Whose own resource files are validated here (the others only patch base/).
const VALIDATED = ["deploy/k8s/base", "deploy/k8s/inference-gateway"];

const objects = []; // {label, obj}
for (const dir of KUSTOMIZATIONS) {
  const file = `${dir}/kustomization.yaml`;
  const k = await loadYaml(file).then((d) => d[0], (e) => e);
  check(`${file}: a Kustomization whose resources and patches exist`, () => {
    if (k instanceof Error) throw k;
    assert(k.apiVersion === "kustomize.config.k8s.io/v1beta1" && k.kind === "Kustomization",
      `apiVersion/kind ${k.apiVersion}/${k.kind}`);
    const refs = [...(k.resources ?? []), ...(k.patches ?? []).map((p) => p.path).filter(Boolean)];
    assert(refs.length, "no resources");
    for (const r of refs) {
      const p = path.join(dir, r);
      assert(exists(p) && (isYaml(p) || exists(`${p}/kustomization.yaml`)),
        `${r}: neither a YAML file nor a directory with a kustomization.yaml`);
    }
    // Every YAML file beside it is used: nothing lies around unapplied.
    const here = listFiles(dir, (p) => isYaml(p) && path.dirname(p) === dir && !p.endsWith("/kustomization.yaml"));
    const used = new Set(refs.map((r) => path.join(dir, r)));
    const unused = here.filter((p) => !used.has(p));
    assert(!unused.length, `not referenced: ${unused.join(", ")}`);
    return `${refs.length} references`;
  });
  if (VALIDATED.includes(dir) && !(k instanceof Error)) {
    for (const r of (k.resources ?? []).filter((r) => isYaml(r))) {
      const docs = await loadYaml(path.join(dir, r));
      docs.forEach((obj, i) => objects.push({ label: `${dir}/${r}${docs.length > 1 ? `#${i}` : ""}`, obj }));
    }
  }
}

check("base/ has a Deployment, Service, PodDisruptionBudget, HPA, ServiceMonitor and PVC", () => {
  const kinds = objects.filter(({ label }) => label.startsWith("deploy/k8s/base/")).map(({ obj }) => obj.kind);
  for (const k of ["Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim", "PodDisruptionBudget",
    "Service", "ServiceMonitor"]) {
    assert(kinds.includes(k), `no ${k} (have ${kinds.join(", ")})`);
  }
});
check("inference-gateway/ has an InferencePool, its endpoint picker (Deployment, Service, RBAC) and an HTTPRoute", () => {
  const kinds = objects.filter(({ label }) => label.startsWith("deploy/k8s/inference-gateway/")).map(({ obj }) => obj.kind);
  for (const k of ["InferencePool", "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
    "HTTPRoute"]) {
    assert(kinds.includes(k), `no ${k} (have ${kinds.join(", ")})`);
  }
});

for (const { label, obj } of objects) {
  let err = null;
  let key = "";
  try {
    key = await validateObject(obj);
  } catch (e) {
    err = e;
  }
  check(`${label}: ${obj.kind} ${obj.metadata?.name} validates against the OpenAPI schema`, () => {
    if (err) throw err;
    return key;
  });
}

const typeErrors = await typecheckObjects(objects).catch((e) => [e.message]);
check(`base/ and inference-gateway/ objects have no fields unknown to the API (${objects.length} objects checked)`, () => {
  assert(!typeErrors.length, typeErrors.join("\n"));
});

finish();
