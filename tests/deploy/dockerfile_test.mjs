// The Dockerfile: lint (dockerfile-utils, the validator behind VS Code's
// Docker support, offline), the image rules this project keeps, and that the
// images build with the README's own steps (scripts/setup.sh + scripts/build.sh
// through scripts/docker-build.sh) rather than logic of their own.
// .dockerignore must not hide anything the build needs.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {
  assert, assertEqual, check, exists, expandArgs, finish, need, parseDockerfile, parseHealthcheck, read, ROOT,
} from "./lib.mjs";

const { validate } = await need("dockerfile-utils");
const df = await parseDockerfile();
const TARGETS = ["cpu", "cuda"];
const runs = (stage) => stage.instructions.filter((i) => i.keyword === "RUN");
const one = (stage, keyword) => {
  const found = stage.instructions.filter((i) => i.keyword === keyword);
  assert(found.length === 1, `stage ${stage.name}: ${found.length} ${keyword} instructions, want 1`);
  return found[0];
};

// --- lint ----------------------------------------------------------------
check("dockerfile-utils reports nothing (errors or warnings)", () => {
  const diags = validate(read("Dockerfile"), {
    deprecatedMaintainer: 2, directiveCasing: 2, emptyContinuationLine: 2, instructionCasing: 2,
    instructionCmdMultiple: 2, instructionEntrypointMultiple: 2, instructionHealthcheckMultiple: 2,
    instructionJSONInSingleQuotes: 2, instructionWorkdirRelative: 2,
  });
  assert(!diags.length, diags.map((d) => `line ${d.range.start.line + 1}: ${d.message}`).join("\n"));
});

check("every base image is pinned to a tag (or is an earlier stage)", () => {
  const seen = [];
  for (const s of df.stages) {
    const base = expandArgs(s.base, df.globalArgs);
    if (!seen.includes(base)) {
      const m = /^[\w./-]+(?::([\w.-]+))?(@sha256:[0-9a-f]{64})?$/.exec(base);
      assert(m && (m[1] || m[2]), `stage ${s.name}: base ${base} has no tag`);
      assert(m[1] !== "latest", `stage ${s.name}: base ${base} is :latest`);
    }
    seen.push(s.name);
  }
  return df.stages.map((s) => `${s.name}<-${expandArgs(s.base, df.globalArgs)}`).join(" ");
});

check("targets cpu and cuda exist; cpu is the last stage (the default target)", () => {
  for (const t of TARGETS) assert(df.stage(t), `no stage ${t}`);
  assertEqual(df.stages.at(-1).name, "cpu", "last stage");
});

check("CPU target: built on debian:12, runs on debian:12-slim", () => {
  const base = (n) => expandArgs(df.stage(n).base, df.globalArgs);
  assertEqual([base("build-cpu"), base("cpu")], ["debian:12", "debian:12-slim"], "bases");
  assertEqual([base("build-cuda"), base("cuda")], ["debian:12", "debian:12-slim"], "CUDA bases");
});

for (const t of TARGETS) {
  check(`${t}: runs as a non-root numeric user, exec-form ENTRYPOINT/CMD/HEALTHCHECK, STOPSIGNAL SIGTERM`, () => {
    const stage = df.stage(t);
    const user = one(stage, "USER").argv[0];
    assert(/^\d+(:\d+)?$/.test(user) && !user.startsWith("0"), `USER ${user}: want a numeric non-root uid`);
    for (const k of ["ENTRYPOINT", "CMD"]) assert(one(stage, k).json, `${k} is not in exec (JSON) form`);
    parseHealthcheck(one(stage, "HEALTHCHECK"));
    assertEqual(one(stage, "STOPSIGNAL").argv, ["SIGTERM"], "STOPSIGNAL");
    assert(path.isAbsolute(one(stage, "WORKDIR").argv[0]), "WORKDIR is relative");
    return `USER ${user}`;
  });
}

// --- the build steps are the README's ------------------------------------
const TOOLS = /\b(apt-get|apt|dpkg|cmake|ninja|make|g\+\+|gcc|clang|nvcc|pip3?|npm|curl|wget)\b/;
check("no RUN in the Dockerfile installs or builds by itself (only scripts/docker-*.sh)", () => {
  for (const s of df.stages) {
    for (const r of runs(s)) {
      const cmd = r.argv.join(" ");
      assert(!TOOLS.test(cmd), `stage ${s.name} line ${r.line}: ${cmd}`);
      assert(/(^|\s)(scripts|\/tmp\/alibi-setup)\/docker-(build|runtime)\.sh\s/.test(cmd),
        `stage ${s.name} line ${r.line}: RUN does not go through scripts/docker-*.sh: ${cmd}`);
    }
  }
});

const prefixes = {};
for (const t of TARGETS) {
  check(`build-${t}: COPY the sources, then one RUN of scripts/docker-build.sh ${t} into a prefix`, () => {
    const stage = df.stage(`build-${t}`);
    const r = runs(stage);
    assertEqual(r.length, 1, "RUN count");
    const argv = r[0].argv;
    const env = Object.fromEntries(argv.filter((a) => /^\w+=/.test(a)).map((a) => a.split("=")));
    assertEqual(argv.filter((a) => !/^\w+=/.test(a)), ["scripts/docker-build.sh", t], "command");
    assert(env.ALIBI_INSTALL?.startsWith("/"), "ALIBI_INSTALL is not an absolute prefix");
    prefixes[t] = env.ALIBI_INSTALL;
    const copy = stage.instructions.find((i) => i.keyword === "COPY");
    assert(copy && copy.argv[0] === "." && copy.line < r[0].line, "sources are not copied before the build");
    return `prefix ${env.ALIBI_INSTALL}`;
  });
}

check("scripts/docker-build.sh is scripts/setup.sh + scripts/build.sh (tests off, installed), nothing else", () => {
  const lines = read("scripts/docker-build.sh").split("\n").filter((l) => !/^\s*#/.test(l));
  const code = lines.join("\n").replace(/\\\n/g, " ");
  const setup = code.split("\n").filter((l) => /^\s*scripts\/setup\.sh\s*$/.test(l));
  assertEqual(setup.length, 1, "plain `scripts/setup.sh` calls");
  const build = code.split("\n").filter((l) => /(^|\s)scripts\/build\.sh\s*$/.test(l));
  assertEqual(build.length, 1, "scripts/build.sh calls");
  for (const v of ["ALIBI_TESTS=OFF", "ALIBI_INSTALL=", "ALIBI_CUDA="]) {
    assert(build[0].includes(v), `scripts/build.sh is not run with ${v}`);
  }
  assert(code.indexOf("scripts/setup.sh") < code.indexOf("scripts/build.sh"), "build before setup");
  assert(!/\b(cmake|ninja|apt-get|make)\b/.test(code), "docker-build.sh runs build or package tools itself");
  // The build script (the one the README and CI run) really takes these knobs.
  const buildSh = read("scripts/build.sh");
  for (const v of ["ALIBI_TESTS", "ALIBI_INSTALL", "ALIBI_CUDA", "ALIBI_BUILD_DIR"]) {
    assert(buildSh.includes(`\${${v}`), `scripts/build.sh does not read ${v}`);
  }
});

for (const t of TARGETS) {
  check(`${t}: runtime packages from scripts/runtime-packages.txt; binaries from build-${t}; ENTRYPOINT in the prefix`,
    () => {
      const stage = df.stage(t);
      const copies = stage.instructions.filter((i) => i.keyword === "COPY");
      assert(copies.some((c) => !c.flags.some((f) => f.startsWith("--from")) &&
        c.argv.includes("scripts/runtime-packages.txt") && c.argv.includes("scripts/docker-runtime.sh")),
      "runtime-packages.txt and docker-runtime.sh are not copied in");
      const cmds = runs(stage).map((r) => r.argv.join(" "));
      assert(cmds.some((c) => c.endsWith(`docker-runtime.sh install ${t}`)), `no docker-runtime.sh install ${t}`);
      const prefix = prefixes[t];
      assert(prefix, "build stage prefix unknown");
      assert(copies.some((c) => c.flags.includes(`--from=build-${t}`) && c.argv[0] === prefix && c.argv[1] === prefix),
        `no COPY --from=build-${t} ${prefix} ${prefix}`);
      assert(cmds.some((c) => c.includes(`docker-runtime.sh verify ${prefix}`)), "the shared libraries are not verified");
      assertEqual(one(stage, "ENTRYPOINT").json[0], `${prefix}/bin/alibi-server`, "ENTRYPOINT");
      assertEqual(parseHealthcheck(one(stage, "HEALTHCHECK")).command[0], `${prefix}/bin/alibi-cli`, "HEALTHCHECK binary");
    });
}

check("build ARG CUDA_ARCHITECTURES reaches CMake (as CUDAARCHS, which CMakeLists.txt must not override)", () => {
  const stage = df.stage("build-cuda");
  assert(stage.instructions.some((i) => i.keyword === "ARG" && i.argv[0].startsWith("CUDA_ARCHITECTURES=")),
    "build-cuda has no ARG CUDA_ARCHITECTURES");
  assert(/export CUDAARCHS=\$\{CUDA_ARCHITECTURES/.test(read("scripts/docker-build.sh")),
    "scripts/docker-build.sh does not export CUDAARCHS from CUDA_ARCHITECTURES");
  // CMake reads CUDAARCHS only while CMAKE_CUDA_ARCHITECTURES is unset; a
  // default set unconditionally before enable_language(CUDA) would shadow it.
  const cmake = read("CMakeLists.txt");
  const set = cmake.search(/set\(CMAKE_CUDA_ARCHITECTURES\s/);
  if (set >= 0) {
    const guard = cmake.slice(0, set).split("\n").reverse().find((l) => /^\s*if\(/.test(l)) ?? "";
    assert(/CUDAARCHS/.test(guard), `CMakeLists.txt sets CMAKE_CUDA_ARCHITECTURES under \`${guard.trim()}\`, ` +
      "which ignores CUDAARCHS; guard it with: if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND \"$ENV{CUDAARCHS}\" STREQUAL \"\")");
  }
});

check("scripts/runtime-packages.txt: Debian packages, and the CUDA ones tagged `cuda` with an X-Y version", () => {
  const lines = read("scripts/runtime-packages.txt").split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  const debian = lines.filter((l) => !l.startsWith("cuda "));
  const cuda = lines.filter((l) => l.startsWith("cuda ")).map((l) => l.slice(5));
  for (const p of debian) assert(/^[a-z0-9][a-z0-9+.-]+$/.test(p), `bad package line ${JSON.stringify(p)}`);
  for (const p of cuda) assert(/^[a-z0-9][a-z0-9+.-]+-X-Y$/.test(p), `bad cuda line ${JSON.stringify(p)}`);
  assert(cuda.some((p) => p.startsWith("cuda-cudart-")), "no CUDA runtime (cuda-cudart-X-Y)");
  assert(new Set(lines).size === lines.length, "duplicate lines");
  return `${debian.length} Debian, ${cuda.length} CUDA`;
});

// --- the build context ---------------------------------------------------
// .dockerignore as Docker reads it: patterns relative to the context root,
// last match wins, `!` re-includes, a pattern matching a directory excludes
// what is below it.
function dockerignore() {
  const rules = read(".dockerignore").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const p = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, "")).replace(/\/+$/, "");
      const re = p.split("/").map((seg) => (seg === "**" ? "(?:.*)" : seg.replace(/[.+^${}()|\\]/g, "\\$&")
        .replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]"))).join("/").replace(/\(\?:\.\*\)\//g, "(?:.*/)?");
      return { negate, re: new RegExp(`^${re}$`), text: l };
    });
  return (file) => {
    const parts = file.split("/");
    let excluded = false;
    for (const r of rules) {
      for (let i = 1; i <= parts.length; i++) {
        if (r.re.test(parts.slice(0, i).join("/"))) {
          excluded = !r.negate;
          break;
        }
      }
    }
    return excluded;
  };
}

check("the .dockerignore reader works as Docker's does on known cases", () => {
  const ignored = dockerignore();
  assert(ignored("build/CMakeCache.txt") && ignored("build-deploy/x") && ignored(".git/HEAD"), "build dirs, .git");
  assert(ignored("node_modules/yaml/package.json") && ignored("tests/deploy/lib.mjs"), "node_modules, tests");
  assert(ignored("models/other/config.json"), "other models");
  assert(!ignored("models/alibi-tiny-en/config.json"), "the default model");
  assert(!ignored("scripts/build.sh") && !ignored("server/main.cc"), "sources");
});

check("the build context keeps every tracked file the images build from", () => {
  const ignored = dockerignore();
  const cmake = read("CMakeLists.txt");
  const dirs = [...cmake.matchAll(/^\s*add_subdirectory\((\w+)\)/gm)].map((m) => m[1]);
  // tests/ and bench/ are only added with ALIBI_BUILD_TESTS (OFF in images).
  const needed = dirs.filter((d) => !["tests", "bench"].includes(d));
  assert(needed.includes("server") && needed.includes("proto"), `add_subdirectory list ${dirs}`);
  const copied = df.stages.flatMap((st) => st.instructions)
    .filter((i) => i.keyword === "COPY" && !i.flags.some((f) => f.startsWith("--from")))
    .flatMap((c) => c.argv.slice(0, -1)).filter((src) => src !== ".");
  // scripts/setup.sh (run in the build stage) installs npm tools from these.
  const npm = /\bnpm\b/.test(read("scripts/setup.sh")) ? ["package.json", "package-lock.json"] : [];
  const roots = [...new Set([...needed, "third_party", "CMakeLists.txt", "scripts", "cmake", ...npm, ...copied])];
  const tracked = execFileSync("git", ["-C", ROOT, "ls-files", "--", ...roots], { encoding: "utf8" })
    .split("\n").filter(Boolean);
  assert(tracked.length > 50, `only ${tracked.length} tracked files under ${roots}`);
  const lost = tracked.filter(ignored);
  assert(!lost.length, `.dockerignore excludes ${lost.slice(0, 10).join(", ")}`);
  // Every COPY from the context (not from a stage) is in the context.
  for (const s of df.stages) {
    for (const c of s.instructions.filter((i) => i.keyword === "COPY" && !i.flags.some((f) => f.startsWith("--from")))) {
      for (const src of c.argv.slice(0, -1)) {
        if (src === ".") continue;
        assert(!ignored(src), `stage ${s.name}: COPY ${src} is excluded by .dockerignore`);
      }
    }
  }
  return `${tracked.length} files`;
});

check("every COPY source from the context exists in the repository", () => {
  const missing = [];
  for (const s of df.stages) {
    for (const c of s.instructions.filter((i) => i.keyword === "COPY" && !i.flags.some((f) => f.startsWith("--from")))) {
      for (const src of c.argv.slice(0, -1)) if (!exists(src)) missing.push(`${s.name}: ${src}`);
    }
  }
  assert(!missing.length, `missing: ${missing.join(", ")}`);
});

check("the model the images bake in is a complete checkpoint (config.json, tokenizer.json, *.safetensors)", () => {
  const models = new Set();
  for (const t of TARGETS) {
    for (const c of df.stage(t).instructions.filter((i) => i.keyword === "COPY" && !i.flags.length)) {
      if (c.argv[0].startsWith("models/")) models.add(c.argv[0]);
    }
  }
  assert(models.size, "no models/ directory is copied into the images");
  for (const m of models) {
    assert(exists(m), `${m} does not exist`);
    const files = fs.readdirSync(path.join(ROOT, m));
    for (const f of ["config.json", "tokenizer.json"]) assert(files.includes(f), `${m} has no ${f}`);
    assert(files.some((f) => f.endsWith(".safetensors")), `${m} has no *.safetensors`);
  }
  return [...models].join(", ");
});

finish();
