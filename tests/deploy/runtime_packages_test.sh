#!/usr/bin/env bash
# scripts/runtime-packages.txt against the built binaries (the images install
# that list and nothing else):
#   - every library a binary needs (its DT_NEEDED entries, resolved with ldd)
#     comes from a package on the list: Debian's through `dpkg -S`, NVIDIA's
#     CUDA libraries through their package names (`cuda` lines); libcuda.so.1,
#     the driver, is mounted into containers by the NVIDIA Container Toolkit;
#   - every Debian package on the list provides one of those libraries, so the
#     list holds nothing stale (the `cuda` lines are checked only when the
#     binaries link CUDA).
# Libraries needed in turn by those libraries come with apt's dependencies.
#
#   runtime_packages_test.sh PACKAGES_TXT BINARY...
set -uo pipefail

list=${1:?usage: runtime_packages_test.sh PACKAGES_TXT BINARY...}
shift
(($#)) || { echo "no binaries given"; exit 2; }

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $1"; shift; printf '    %s\n' "$@"; failed=$((failed + 1)); }

mapfile -t debian < <(awk '!/^#/ && NF == 1 { print $1 }' "$list")
mapfile -t cuda < <(awk '!/^#/ && $1 == "cuda" { print $2 }' "$list")

# The Debian package that owns a library file, trying the path as given and
# resolved, each also in its /lib <-> /usr/lib form (merged /usr: dpkg records
# whichever path the package ships). One `dpkg -S` for all of them (it is slow).
declare -A owners=()
candidates() {
  local p
  for p in "$1" "$(readlink -f "$1")"; do
    echo "$p"
    case $p in
      /usr/lib/*) echo "${p#/usr}" ;;
      /lib/* | /lib64/*) echo "/usr$p" ;;
    esac
  done
}
lookup_owners() {
  local line pkg file
  while IFS= read -r line; do
    pkg=${line%%: *}
    file=${line#*: }
    owners[$file]=${pkg%%:*}
  done < <(dpkg -S "$@" 2>/dev/null | grep -v '^diversion')
}
owner() {
  local c
  while IFS= read -r c; do
    [[ -n ${owners[$c]:-} ]] && { echo "${owners[$c]}"; return 0; }
  done < <(candidates "$1")
  return 1
}

# NVIDIA's CUDA libraries: soname prefix -> package (X-Y: the CUDA version).
cuda_package() {
  case $1 in
    libcudart.so.*) echo cuda-cudart-X-Y ;;
    libcublas.so.* | libcublasLt.so.*) echo libcublas-X-Y ;;
    libnvrtc.so.* | libnvrtc-builtins.so.*) echo cuda-nvrtc-X-Y ;;
    libcurand.so.*) echo libcurand-X-Y ;;
    libnvJitLink.so.*) echo libnvjitlink-X-Y ;;
    *) return 1 ;;
  esac
}

in_list() {
  local x=$1
  shift
  local e
  for e in "$@"; do [[ $e == "$x" ]] && return 0; done
  return 1
}

# Every library path the binaries resolve to, looked up in one go.
all_paths=()
for bin in "$@"; do
  [[ -x $bin ]] || continue
  while IFS= read -r p; do
    mapfile -t -O "${#all_paths[@]}" all_paths < <(candidates "$p")
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done
if ((${#all_paths[@]})); then
  mapfile -t all_paths < <(printf '%s\n' "${all_paths[@]}" | sort -u)
  lookup_owners "${all_paths[@]}"
fi

declare -A used=()
links_cuda=0
for bin in "$@"; do
  name=$(basename "$bin")
  if [[ ! -x $bin ]]; then
    not_ok "$name: built" "$bin is missing"
    continue
  fi
  mapfile -t needed < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  ldd_out=$(ldd "$bin")
  problems=()
  for so in "${needed[@]}"; do
    # "libx.so.1 => /path/libx.so.1 (0x..)" or "/lib64/ld-linux-x86-64.so.2 (0x..)"
    path=$(awk -v s="$so" '$1 == s && $2 == "=>" { print $3; exit }
      $1 ~ ("/" s "$") { print $1; exit }' <<<"$ldd_out")
    if [[ $so == libcuda.so.1 ]]; then
      continue
    fi
    if pkg=$(cuda_package "$so"); then
      links_cuda=1
      used["cuda $pkg"]=1
      in_list "$pkg" "${cuda[@]}" || problems+=("$so: add 'cuda $pkg'")
      continue
    fi
    if [[ -z $path || $path == "not" ]]; then
      problems+=("$so: not found by ldd")
      continue
    fi
    if ! pkg=$(owner "$path"); then
      problems+=("$so ($path): no Debian package owns it")
      continue
    fi
    used[$pkg]=1
    in_list "$pkg" "${debian[@]}" || problems+=("$so ($path): its package $pkg is not listed")
  done
  if ((${#problems[@]})); then
    not_ok "$name: every needed library comes from a listed package" "${problems[@]}"
  else
    ok "$name: every needed library comes from a listed package (${#needed[@]} libraries)"
  fi
done

stale=()
for p in "${debian[@]}"; do [[ -n ${used[$p]:-} ]] || stale+=("$p provides no library the binaries need"); done
if ((links_cuda)); then
  for p in "${cuda[@]}"; do [[ -n ${used["cuda $p"]:-} ]] || stale+=("cuda $p provides no library the binaries need"); done
fi
if ((${#stale[@]})); then
  not_ok "scripts/runtime-packages.txt lists only packages in use" "${stale[@]}"
else
  ok "scripts/runtime-packages.txt lists only packages in use (${#debian[@]} Debian$( ((links_cuda)) && echo ", ${#cuda[@]} CUDA"))"
fi

echo "$passed passed, $failed failed"
((failed == 0))
