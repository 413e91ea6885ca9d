#!/usr/bin/env bash
# The GPU path's one short run: prepared here, run on a GPU machine.
#
# Here (no GPU needed):
#   scripts/gpu-check.sh             builds the check (Release, stripped, in
#                                    ${ALIBI_GPUCHECK_BUILD_DIR:-build-gpucheck}),
#                                    packs every executable it runs, the CUDA
#                                    plugin (dlopen'ed, so named explicitly)
#                                    and their libraries into
#                                    .gpu-check/bundle.tar.xz, and prints the
#                                    command to run there
#   scripts/gpu-check.sh --dry-run   the same, then checks the bundle without a
#                                    GPU (CI): complete (plugin included), the
#                                    working tree plus the bundle under 60 MiB,
#                                    every executable starts (and loads the
#                                    plugin), and the device run's test step
#                                    fails here: ALIBI_REQUIRE_GPU=1 turns a
#                                    gpu test's skip into a failure
# There (the repository's working tree, .gpu-check carried along; PyTorch,
# transformers and the CUDA driver installed; no Debian gRPC: the bundle
# brings it):
#   scripts/gpu-check.sh --device    within 8 minutes, each step under its own
#                                    time limit, everything under $OUT:
#     summary.md        commit, device, driver, date; each step's status and time
#     nvidia-smi.txt    nvidia-smi and nvidia-smi -q
#     tests.txt         the gpu-labelled tests (skips count as failures),
#                       among them the fixture models served by the real
#                       alibi-server with --device=cuda and scored against the
#                       float64 references (gpu_test: CudaServerTest)
#     gpubench.txt      alibi-gpubench on BLOOM-560m and BLOOM-7b1 shapes
#                       (checkpoints written there by alibi-mkmodel), every
#                       figure with its floor and ratio
#     hf_generate.txt   transformers generate() at batch 1 and 32 on the same
#                       checkpoints
#     logs.tar.gz       everything else (gtest JSON, server and mkmodel logs)
#   Steps can be chosen: --device --steps=env,tests,gpubench,hf
#   (the dry run uses --steps=tests).
#
# Environment: ALIBI_GPUCHECK_BUILD_DIR and ALIBI_GPUCHECK_BUILD_TYPE (default
# build-gpucheck, Release; CI's dry run packs its test build instead:
# build, RelWithDebInfo, stripped all the same), ALIBI_JOBS (parallelism).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pack_dir=.gpu-check
bundle=$pack_dir/bundle.tar.xz
readonly travel_limit_mib=60  # of the 64 MiB the device tool carries

# What the device run executes (bin/ of the bundle).
executables=(alibi-server alibi-mkmodel alibi-gpubench gpu_test
  libalibi_cuda.so)
gpu_tests=(gpu_test)

die() {
  echo "gpu-check: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# Here: build and pack
# ---------------------------------------------------------------------------

build_and_pack() {
  local build=${ALIBI_GPUCHECK_BUILD_DIR:-build-gpucheck}
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  # Its own build: Hopper machine code only (no PTX: a smaller plugin).
  local arch=()
  [[ -z ${ALIBI_GPUCHECK_BUILD_DIR:-} ]] && arch=(-DCMAKE_CUDA_ARCHITECTURES=90-real)
  cmake -S . -B "$build" "${generator[@]}" "${arch[@]}" \
    -DCMAKE_BUILD_TYPE="${ALIBI_GPUCHECK_BUILD_TYPE:-Release}" \
    -DALIBI_CUDA=ON -DALIBI_BUILD_TESTS=ON >/dev/null
  cmake --build "$build" --parallel "${ALIBI_JOBS:-$(nproc)}" --target \
    alibi-server alibi-mkmodel alibi_gpubench alibi_cuda_plugin \
    alibi_blas_shim "${gpu_tests[@]}"
  local -A path=(
    [alibi-server]=server/alibi-server
    [alibi-mkmodel]=tools/mkmodel/alibi-mkmodel
    [alibi-gpubench]=bench/gpu/alibi-gpubench
    [libalibi_cuda.so]=lib/libalibi_cuda.so)
  for t in "${gpu_tests[@]}"; do path[$t]=tests/gpu/$t; done
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' RETURN
  for exe in "${executables[@]}"; do
    cp "$build/${path[$exe]}" "$stage/$exe"
    strip --strip-unneeded "$stage/$exe"
  done
  mkdir -p "$pack_dir"
  # ldd resolves libopenblas.so.0 to the small stand-in (tests/gpu/blas_shim):
  # Debian's OpenBLAS (36 MB, with libgfortran) would not fit the trip. xz
  # with its x86 branch filter: a tenth smaller on executables.
  local bundle_tool=$root/../shared/tools/device-bundle.sh
  [[ -x $bundle_tool ]] || die "$bundle_tool not found (../shared beside the checkout)"
  LD_LIBRARY_PATH="$PWD/$build/gpu-check-blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    XZ_OPT="--x86 --lzma2=preset=9e,dict=64MiB" \
    "$bundle_tool" "$bundle.tmp" "${executables[@]/#/$stage/}"
  mv "$bundle.tmp" "$bundle"
  {
    echo "commit $(git rev-parse HEAD)"
    if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
      echo "working tree: modified"
      git status --porcelain --untracked-files=no
    fi
    echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  } >"$pack_dir/COMMIT"
}

# Bytes the device tool would carry: the working tree (tracked and untracked
# files git does not ignore) plus the carried .gpu-check.
travel_bytes() {
  local tree pack
  tree=$(git ls-files -z --cached --others --exclude-standard |
    xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
  pack=$(find "$pack_dir" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  echo $((tree + pack))
}

print_command() {
  cat <<EOF

gpu-check: bundle ready ($(du -h "$bundle" | cut -f1), $(head -1 "$pack_dir/COMMIT")).
On a GPU machine, one call of the device tool from this checkout:

  run(command="bash scripts/gpu-check.sh --device", carry=[".gpu-check"], timeout_s=540)

It runs within 8 minutes and writes its files under \$OUT. Commit them under
bench/results/ (e.g. bench/results/gpu_check_<date>/) with the device, driver,
date and commit its summary.md records; every gpubench figure carries its
ratio to its floor.
EOF
}

# ---------------------------------------------------------------------------
# Here: dry run of the bundle (CI)
# ---------------------------------------------------------------------------

dry_run() {
  local listing tmp
  listing=$(tar tJf "$bundle")
  for exe in "${executables[@]}"; do
    grep -qx "./bin/$exe" <<<"$listing" || die "bundle lacks bin/$exe"
  done
  grep -qx "./run.sh" <<<"$listing" || die "bundle lacks run.sh"
  grep -qx "./lib/libgrpc++.so.1.51" <<<"$listing" ||
    grep -q "^./lib/libgrpc++" <<<"$listing" || die "bundle lacks gRPC"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  tar xJf "$bundle" -C "$tmp"
  local blas=$tmp/lib/libopenblas.so.0
  [[ -f $blas && $(stat -c %s "$blas") -lt 1000000 ]] ||
    die "the bundle's libopenblas.so.0 is not the small stand-in"
  echo "gpu-check: bundle complete: ${#executables[@]} executables (the CUDA plugin included), $(grep -c '^./lib/.' <<<"$listing") libraries"

  local bytes limit=$((travel_limit_mib << 20))
  bytes=$(travel_bytes)
  echo "gpu-check: working tree + bundle: $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB ($bytes bytes; limit $travel_limit_mib MiB)"
  ((bytes < limit)) || die "over the $travel_limit_mib MiB the device run may carry"

  # Every executable starts; the plugin is found and loads (the CUDA backend
  # then reports no device, not a missing plugin).
  local out
  out=$("$tmp/run.sh" alibi-server --device=cuda --port=0 --metrics_port=-1 \
    --model=tests/data/models/tiny-bloom 2>&1) && die "alibi-server ran without a GPU"
  grep -q "no CUDA device is visible" <<<"$out" ||
    die "alibi-server did not load the CUDA plugin: $out"
  out=$("$tmp/run.sh" alibi-gpubench 2>&1) && die "alibi-gpubench ran without a GPU"
  grep -q "no CUDA device is visible" <<<"$out" || die "alibi-gpubench: $out"
  "$tmp/run.sh" alibi-mkmodel --preset tiny-bloom --out "$tmp/model" >/dev/null ||
    die "alibi-mkmodel failed"
  for t in "${gpu_tests[@]}"; do
    "$tmp/run.sh" "$t" --gtest_list_tests >/dev/null || die "$t does not start"
  done
  echo "gpu-check: every executable starts; the CUDA plugin loads"

  # The device run's test step, here: with ALIBI_REQUIRE_GPU=1 every gpu test
  # that would skip fails, so the step must fail, and say why.
  if OUT=$tmp/out GPUCHECK_BUNDLE_DIR=$tmp bash scripts/gpu-check.sh \
    --device --steps=tests >"$tmp/device.log" 2>&1; then
    cat "$tmp/device.log"
    die "the device test step passed without a GPU"
  fi
  grep -q "ALIBI_REQUIRE_GPU=1, but --device=cuda: no CUDA device is visible" \
    "$tmp/out/tests.txt" || die "the device test step failed for another reason: $(tail -20 "$tmp/out/tests.txt")"
  grep -q "skipped 0," "$tmp/out/tests.txt" || die "tests were skipped in forced-GPU mode"
  echo "gpu-check: forced-GPU mode fails without a GPU: $(grep '^total' "$tmp/out/tests.txt")"
  echo "gpu-check: dry run passed"
}

# ---------------------------------------------------------------------------
# There: the device run
# ---------------------------------------------------------------------------

device_run() {
  : "${OUT:?set OUT to the directory for the results}"
  local steps=$1
  local t0 budget=470  # seconds for all steps: 8 minutes, with a margin
  t0=$(date +%s)
  local work=${GPUCHECK_WORK:-/tmp/alibi-gpucheck}
  rm -rf "$work"
  mkdir -p "$work"/{logs,json,models} "$OUT"
  local bin=${GPUCHECK_BUNDLE_DIR:-$work/bundle}
  if [[ -z ${GPUCHECK_BUNDLE_DIR:-} ]]; then
    [[ -f $bundle ]] || die "$bundle missing: carry .gpu-check (see scripts/gpu-check.sh)"
    mkdir -p "$bin"
    tar xJf "$bundle" -C "$bin"
  fi
  # As the bundle's run.sh: its libraries first, then the machine's CUDA.
  local cuda_lib
  cuda_lib=$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null | head -1 || true)
  export LD_LIBRARY_PATH="$bin/lib${cuda_lib:+:$cuda_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export ALIBI_CUDA_PLUGIN=$bin/bin/libalibi_cuda.so
  export ALIBI_TEST_DATA_DIR=$root/tests/data ALIBI_SOURCE_DIR=$root
  # The tests start the server as $ALIBI_BINARY_DIR/server/alibi-server.
  mkdir -p "$work/tree/server"
  ln -sf "$bin/bin/alibi-server" "$work/tree/server/alibi-server"
  export ALIBI_BINARY_DIR=$work/tree

  local summary=$OUT/summary.md status=0
  {
    echo "# scripts/gpu-check.sh --device"
    echo
    sed 's/^/    /' "$pack_dir/COMMIT" 2>/dev/null || echo "    (no COMMIT file)"
    echo "    run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "    gpu $(timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total \
      --format=csv,noheader 2>&1 | head -1)"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---|"
  } >"$summary"
  # step NAME LIMIT COMMAND...: runs COMMAND under the smaller of LIMIT and
  # the time left, records its status.
  step() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - ($(date +%s) - t0)))
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
      echo "| $name | not run: out of time | 0 |" >>"$summary"
      status=1
      return
    fi
    local s0 rc=0
    s0=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=5 "$limit" "$@" || rc=$?
    local what=ok
    ((rc == 124 || rc == 137)) && what="timed out after ${limit}s"
    ((rc != 0 && rc != 124 && rc != 137)) && what="failed ($rc)"
    echo "| $name | $what | $(($(date +%s) - s0)) |" >>"$summary"
    ((rc == 0)) || status=1
  }

  local mk_pid=""
  if [[ $steps == *gpubench* || $steps == *hf* ]]; then
    # The checkpoints, written while the tests run (CPU only): each in a
    # temporary directory, renamed when complete.
    (
      for preset in bloom-560m bloom-7b1; do
        "$bin/bin/alibi-mkmodel" --preset "$preset" --dtype bf16 \
          --out "$work/models/$preset.tmp" &&
          mv "$work/models/$preset.tmp" "$work/models/$preset"
      done
    ) >"$work/logs/mkmodel.log" 2>&1 &
    mk_pid=$!
  fi

  if [[ $steps == *env* ]]; then
    step nvidia-smi 20 bash -c "nvidia-smi && nvidia-smi -q" >"$OUT/nvidia-smi.txt" 2>&1
  fi
  if [[ $steps == *tests* ]]; then
    step gpu-tests 180 bash scripts/gpu-check.sh --gpu-tests "$bin" "$work" \
      >"$OUT/tests.txt" 2>&1
    tail -1 "$OUT/tests.txt" | sed 's/^/    /' >>"$summary"
  fi
  if [[ -n $mk_pid ]]; then
    local left=$((budget - 260 - ($(date +%s) - t0)))  # 260 s for the rest
    step checkpoints "$((left > 10 ? left : 10))" bash -c \
      "while kill -0 $mk_pid 2>/dev/null; do sleep 1; done"
    pkill -P "$mk_pid" 2>/dev/null || true  # an unfinished alibi-mkmodel
    kill "$mk_pid" 2>/dev/null || true
  fi
  if [[ $steps == *gpubench* ]]; then
    step gpubench 140 env ALIBI_BIN_DIR="$bin/bin" GPUBENCH_DIR="$work/models" \
      bench/gpu/run_gpubench.sh --reps 5 >"$OUT/gpubench.txt" 2>&1
  fi
  if [[ $steps == *hf* ]]; then
    local dirs=()
    for preset in bloom-560m bloom-7b1; do
      [[ -d $work/models/$preset ]] && dirs+=("$work/models/$preset")
    done
    local joined
    joined=$(
      IFS=,
      echo "${dirs[*]}"
    )
    step hf-generate 120 env PYTHONUNBUFFERED=1 python3 bench/gpu/hf_generate.py \
      --model_dir "$joined" --batch 1,32 >"$OUT/hf_generate.txt" 2>&1
  fi
  echo >>"$summary"
  echo "total $(($(date +%s) - t0)) s; $( ((status == 0)) && echo "all steps passed" || echo "FAILED")" >>"$summary"
  tar czf "$OUT/logs.tar.gz" -C "$work" logs json 2>/dev/null || true
  cat "$summary"
  return "$status"
}

# The gpu-labelled test binary in 4 concurrent shards (GTEST_TOTAL_SHARDS),
# each under ALIBI_REQUIRE_GPU=1 with JSON results; then one line per shard
# and a total. A skipped test counts as a failure.
run_gpu_tests() {
  local bin=$1 work=$2 pids=() runs=() rc=0 shards=4
  export ALIBI_REQUIRE_GPU=1
  for t in "${gpu_tests[@]}"; do
    for ((i = 0; i < shards; ++i)); do
      GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$bin/bin/$t" \
        --gtest_output="json:$work/json/$t.$i.json" \
        >"$work/logs/$t.$i.log" 2>&1 &
      pids+=($!)
      runs+=("$t.$i")
    done
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  for t in "${runs[@]}"; do
    echo "---- $t"
    grep -E "^\[  (FAILED|SKIPPED) |^\[  PASSED|Failure|ALIBI_REQUIRE_GPU" \
      "$work/logs/$t.log" | head -60 || true
  done
  python3 - "$work/json" "${runs[@]}" <<'PY' || rc=1
import json, os, sys
directory, names = sys.argv[1], sys.argv[2:]
total = failed = skipped = 0
for name in names:
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        print(f"{name}: no results (crashed or timed out)")
        failed += 1
        continue
    report = json.load(open(path))
    t = f = s = 0
    for suite in report.get("testsuites", []):
        for case in suite.get("testsuite", []):
            t += 1
            if case.get("failures"):
                f += 1
            elif case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                s += 1
    print(f"{name}: {t} tests, {f} failed, {s} skipped")
    total, failed, skipped = total + t, failed + f, skipped + s
print(f"total {total} tests: failed {failed}, skipped {skipped}, "
      f"{'PASSED' if failed == skipped == 0 and total else 'FAILED'}")
sys.exit(0 if failed == skipped == 0 and total else 1)
PY
  return $rc
}

if [[ ${1:-} == --gpu-tests ]]; then  # internal: the device run's test step
  run_gpu_tests "$2" "$3"
  exit
fi
mode=pack
steps=env,tests,gpubench,hf
for arg in "$@"; do
  case $arg in
    --dry-run) mode=dry ;;
    --device) mode=device ;;
    --steps=*) steps=${arg#--steps=} ;;
    *) die "unknown argument $arg (see the header of $0)" ;;
  esac
done
case $mode in
  pack)
    build_and_pack
    print_command
    ;;
  dry)
    build_and_pack
    dry_run
    print_command
    ;;
  device) device_run "$steps" ;;
esac
