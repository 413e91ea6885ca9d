// Every YAML file under deploy/ parses: all documents, no duplicate keys, no
// warnings (the `yaml` package, YAML 1.2).
import { check, finish, isYaml, listFiles, loadYaml } from "./lib.mjs";

const files = listFiles("deploy", isYaml);
check("deploy/ holds YAML files", () => {
  if (files.length < 5) throw new Error(`only ${files.length} YAML files under deploy/`);
  return `${files.length} files`;
});
for (const f of files) {
  const docs = await loadYaml(f).catch((e) => e);
  check(`${f} parses`, () => {
    if (docs instanceof Error) throw docs;
    if (!docs.length) throw new Error("no YAML document in it");
    return `${docs.length} document${docs.length > 1 ? "s" : ""}`;
  });
}
finish();
