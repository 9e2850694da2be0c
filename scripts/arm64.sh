#!/usr/bin/env bash
# The arm64 lane: the project set up and run in an arm64 Debian 12 root on an x86-64 machine by
# user-mode emulation (Debian's qemu-user-static registered in binfmt_misc, a root made with
# debootstrap, entered with chroot). The terminals are 64-bit ARM; this proves the same code,
# wheels and models work there and give the same results. See docs/arm64.md.
#
#   scripts/arm64.sh                 # every step, from nothing: root setup models demo tests parity
#   scripts/arm64.sh demo parity     # some steps (all but `root` need the root made before)
#   scripts/arm64.sh check           # can this machine run the lane? (exit 1, with the reason, if not)
#   scripts/arm64.sh sh 'COMMAND'    # one command inside the root, in the project's synced copy
#   scripts/arm64.sh clean           # remove the root
#
# Needs root on the host (mount, chroot) and a kernel that lets it mount binfmt_misc: a VM or a
# privileged container. Environment: ARM64_ROOT (where the root lives, default .cache/arm64/root,
# git-ignored), QEMU_CPU (emulated core, default cortex-a72 as in a Raspberry Pi 4), EDGE_DATASETS
# (bind-mounted read-only when present, as the tests and the demo use it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT=${ARM64_ROOT:-$REPO/.cache/arm64/root}
OUT=$REPO/.cache/arm64 # reports and times, beside the root
INSIDE=/srv/gate-edge  # the project's copy inside the root (its own .venv, models/, .cache/)
SUITE=bookworm
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
DATASETS=${EDGE_DATASETS:-$REPO/../shared/datasets}
# the numeric suites run inside: gallery, CPU parity, consent, events, detection
ARM64_TESTS=(tests/numeric tests/gallery tests/consent tests/events tests/vision/test_face_detect.py)
STEPS_ALL=(root setup models demo tests parity)

say() { printf 'arm64: %s\n' "$*"; }
die() {
  printf 'arm64: FAILED: %s\n' "$*" >&2
  exit 1
}
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }

# ------------------------------------------------------------------ can this machine run it?

check_host() {
  [ "$(uname -m)" = x86_64 ] || die "the lane emulates arm64 on an x86-64 host; this is $(uname -m)"
  [ "$(id -u)" -eq 0 ] || die "needs root on the host (mount, chroot, binfmt_misc); run it with sudo"
  local need=()
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  local misc=/proc/sys/fs/binfmt_misc
  if [ ! -e "$misc/register" ]; then
    mount -t binfmt_misc binfmt_misc "$misc" 2>/dev/null ||
      die "cannot mount binfmt_misc at $misc (an unprivileged container?): run the lane in a VM or a privileged container"
  fi
  if [ ! -e "$misc/qemu-aarch64" ]; then
    # Debian's description of the ELF header; F: the kernel opens the emulator now, so it need not
    # exist inside the root
    local magic mask
    magic=$(awk '$1 == "magic" { print $2 }' /usr/share/binfmts/qemu-aarch64)
    mask=$(awk '$1 == "mask" { print $2 }' /usr/share/binfmts/qemu-aarch64)
    [ -n "$magic" ] && [ -n "$mask" ] || die "no ELF magic for aarch64 in /usr/share/binfmts/qemu-aarch64"
    echo ":qemu-aarch64:M::$magic:$mask:$(command -v qemu-aarch64-static):F" >"$misc/register" ||
      die "the kernel refused the binfmt_misc registration for qemu-aarch64"
    say "registered qemu-aarch64 in binfmt_misc (flag F)"
  fi
  grep -q '^flags:.*F' "$misc/qemu-aarch64" ||
    die "qemu-aarch64 is registered without the F flag: the emulator would have to be inside the root; remove it (echo -1 > $misc/qemu-aarch64) and run again"
  grep -q '^enabled' "$misc/qemu-aarch64" || die "qemu-aarch64 is registered but disabled in $misc"
}

# ------------------------------------------------------------------ the root

mirror() {
  # the Debian mirror the host's apt uses (deb822 or one-line sources)
  local uri
  uri=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 == "'$SUITE'" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

make_root() {
  if [ -f "$ROOT/.lane-ready" ]; then
    say "root exists: $ROOT"
    return
  fi
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  local m
  m=$(mirror)
  say "debootstrap $SUITE arm64 from $m into $ROOT"
  debootstrap --arch=arm64 --variant=minbase --include=ca-certificates,python3,python3-venv,python3-dev,mosquitto \
    "$SUITE" "$ROOT" "$m" >"$OUT/debootstrap.log" 2>&1 || die "debootstrap failed; see $OUT/debootstrap.log"
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $m $SUITE main
deb $m $SUITE-updates main
deb ${m%/debian*}/debian-security $SUITE-security main
EOF
  # apt settings that make the mirror work here (validity of snapshot mirrors, proxies)
  for conf in /etc/apt/apt.conf.d/*; do
    if grep -q 'Acquire' "$conf" && ! grep -q 'Invoke' "$conf"; then cp "$conf" "$ROOT/etc/apt/apt.conf.d/"; fi
  done
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d" # no services start inside
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  touch "$ROOT/.lane-ready"
}

host_config() {
  # what the host needs to reach its package indexes: DNS, extra CA certificates, pip's config
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -r /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed inside the root"
  fi
  for conf in /etc/pip.conf /etc/xdg/pip; do
    if [ -e "$conf" ]; then
      mkdir -p "$ROOT$(dirname "$conf")"
      cp -r "$conf" "$ROOT$(dirname "$conf")/"
    fi
  done
}

MOUNTS=()
mount_root() {
  mount_at() { # mount_at TARGET ARGS...
    [ -e "$1" ] || mkdir -p "$1"
    mount "${@:2}" "$1"
    MOUNTS+=("$1")
  }
  mount_at "$ROOT/proc" -t proc proc
  mount_at "$ROOT/sys" --rbind /sys
  mount_at "$ROOT/dev" --rbind /dev
  # QEMU 7.2 shows the program the host's x86 /proc/cpuinfo, and XNNPACK's CPU detection then
  # crashes (a segfault in allocate_tensors): show it an ARM one instead
  local cpus
  cpus=$(nproc)
  for ((i = 0; i < cpus; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
  done >"$OUT/cpuinfo-cortex-a72"
  mount_at "$ROOT/proc/cpuinfo" --bind "$OUT/cpuinfo-cortex-a72"
  if [ -d "$DATASETS" ]; then
    mount_at "$ROOT/srv/shared/datasets" --bind -o ro "$(realpath "$DATASETS")"
  fi
  # local package folders the pip config names (find-links, file:// indexes), at the same paths
  local dir
  for dir in $( (.venv/bin/python -m pip config list 2>/dev/null || true) | grep -oE "(file://)?/[^' ]+" | sed 's#^file://##' | sort -u); do
    while [ ! -d "$dir" ] && [ "$dir" != / ]; do dir=$(dirname "$dir"); done
    case "$dir" in / | /etc* | /usr* | /proc* | /sys* | /dev*) continue ;; esac
    if [ -d "$dir" ] && ! mountpoint -q "$ROOT$dir"; then mount_at "$ROOT$dir" --bind -o ro "$dir"; fi
  done
}

lock_root() {
  # one run at a time per root: a second run's stale_mounts and kill_inside would otherwise take
  # the mounts and processes of a run still going (flock is released when this shell exits)
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$ROOT.lock"
  flock -n 9 || die "another scripts/arm64.sh is using $ROOT (lock $ROOT.lock held); wait for it or use another ARM64_ROOT"
}

stale_mounts() {
  # a run killed before its EXIT trap (a lost session, SIGKILL) leaves its mounts behind, some on
  # directories since deleted; mounting over those fails with ENOENT: undo them first, deepest first
  local m left=0
  for m in $(awk -v r="$ROOT" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null && left=$((left + 1))
  done
  if [ "$left" -gt 0 ]; then say "undid $left mount(s) a killed run left under $ROOT"; fi
}

kill_inside() {
  # a crash inside (the demo's broker, simulators) can leave children running: end them by pid
  local pid left=0
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    if [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$ROOT" ]; then
      kill -9 "$pid" 2>/dev/null && left=$((left + 1))
    fi
  done
  if [ "$left" -gt 0 ]; then say "ended $left process(es) left inside the root"; fi
}

unmount_root() {
  kill_inside
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -R "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  MOUNTS=()
}

inside() { # inside COMMAND: run a shell command in the project's copy inside the root
  local env=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU")
  [ -d "$DATASETS" ] && env+=(EDGE_DATASETS=/srv/shared/datasets)
  local var
  for var in $(compgen -e | grep -E '^(PIP_|SSL_CERT|REQUESTS_CA|CURL_CA|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)'); do
    env+=("$var=${!var}")
  done
  chroot "$ROOT" /usr/bin/env -i "${env[@]}" /bin/bash -c "cd $INSIDE && $1"
}

sync_repo() {
  # the working tree's files (tracked and new, not ignored) into the copy; its .venv, models/ and
  # .cache/ stay. Caches of downloads (models' source packages, the demo's samples, the gallery
  # tests' dlib embeddings of LFW, the fingerprint simulator's features of the FVC fingers) are copied in
  # so the lane does not fetch or compute them again (under emulation the extraction outlasts a capture).
  local dest=$ROOT$INSIDE
  mkdir -p "$dest"
  find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv ! -name models ! -name .cache -exec rm -rf {} +
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$dest"
  local cache
  for cache in models-src demo gallery fpsim; do
    if [ -d ".cache/$cache" ]; then
      mkdir -p "$dest/.cache/$cache"
      cp -rn ".cache/$cache/." "$dest/.cache/$cache/" # what is missing only; the copy's own files stay
    fi
  done
}

# ------------------------------------------------------------------ steps

step_setup() {
  # PIP_VERBOSE=1 cancels setup.sh's -q: the log shows what pip downloaded and what it built
  inside "PIP_VERBOSE=1 bash scripts/setup.sh" >"$OUT/arm64-setup.log" 2>&1 ||
    die "scripts/setup.sh failed inside the arm64 root (log: $OUT/arm64-setup.log)"
  inside ".venv/bin/python -c 'import platform, numpy, faiss, cv2, ai_edge_litert; print(\"arm64: python\", platform.python_version(), platform.machine(), \"numpy\", numpy.__version__)'"
  inside ".venv/bin/python -m pip list --format=freeze" >"$OUT/arm64-packages.txt"
  inside ".venv/bin/python -" <<'PY' >"$OUT/arm64-wheels.txt"
# every installed distribution by the tag of the wheel it came from: a compiled one from PyPI carries
# manylinux_*_aarch64; one pip compiled here from its source carries a bare linux_aarch64
import importlib.metadata as md
import json
import sysconfig

kinds: dict[str, list[str]] = {"aarch64 wheel": [], "compiled here from source": [], "pure Python": [], "this project (editable)": []}
# the venv's own packages only (not the project's egg-info that the working directory also shows)
for dist in md.distributions(path=sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})):
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    name = f"{dist.metadata['Name']} {dist.version}"
    editable = json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable", False)
    if editable:
        kinds["this project (editable)"].append(name)
    elif any(t.endswith("-any") for t in tags):
        kinds["pure Python"].append(name)
    elif any("manylinux" in t or "musllinux" in t for t in tags):
        kinds["aarch64 wheel"].append(f"{name} ({tags[0]})")
    else:
        kinds["compiled here from source"].append(f"{name} ({', '.join(tags) or 'no WHEEL file'})")
for kind, names in kinds.items():
    print(f"{kind}: {len(names)}")
    for n in sorted(names, key=str.lower):
        print(f"  {n}")
PY
  # pure-Python sdists pip turned into wheels (only in a run that installed them: a cold one)
  local built
  built=$(grep -oE 'Building wheel for [^ ]+' "$OUT/arm64-setup.log" | awk '{ print $4 }' | sort -u | paste -sd ' ' || true)
  echo "built into wheels by pip in this run: ${built:-none}" >>"$OUT/arm64-wheels.txt"
  say "setup: $(awk -F': ' '/^[a-z]/ && !/^built/ { printf "%s%s %s", sep, $2, $1; sep = ", " }' "$OUT/arm64-wheels.txt"); built by pip in this run: ${built:-none} (report: $OUT/arm64-wheels.txt)"
}

step_models() {
  [ -f models/manifest.json ] || .venv/bin/edge models build --quiet
  inside ".venv/bin/edge models build --quiet && .venv/bin/edge models verify" >/dev/null ||
    die "edge models build failed inside the arm64 root"
  local host arm
  host=$(cd models && sha256sum -- *.tflite manifest.json)
  arm=$(cd "$ROOT$INSIDE/models" && sha256sum -- *.tflite manifest.json)
  echo "$arm" >"$OUT/arm64-models.sha256"
  if [ "$host" != "$arm" ]; then
    diff <(echo "$host") <(echo "$arm") >&2 || true
    die "the model bundle built on arm64 differs from x86's (SHA-256 above)"
  fi
  say "models: byte-identical to x86's ($(echo "$arm" | wc -l) files, SHA-256)"
}

step_demo() {
  inside ".venv/bin/edge demo --step-timeout 240" | tee "$OUT/arm64-demo.log" | sed 's/^/arm64 demo | /'
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "edge demo failed inside the arm64 root (log: $OUT/arm64-demo.log)"
}

step_tests() {
  # the slow-marked multi-process CPU-variant test runs on x86 in CI; across architectures the
  # parity step compares arm64's results with x86's
  inside ".venv/bin/python -m pytest -q -p no:randomly -m 'not slow' ${ARM64_TESTS[*]}" | tee "$OUT/arm64-tests.log" | tail -n 5
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "the numeric tests failed inside the arm64 root (log: $OUT/arm64-tests.log)"
}

step_parity() {
  local variant
  .venv/bin/python -m edge.testing.parity exact --out "$OUT/x86-exact.json"
  inside ".venv/bin/python -m edge.testing.parity exact --out .cache/parity/arm64-exact.json"
  cp "$ROOT$INSIDE/.cache/parity/arm64-exact.json" "$OUT/"
  local failed=0
  .venv/bin/python -m edge.testing.parity compare "$OUT/x86-exact.json" "$OUT/arm64-exact.json" || failed=1
  for variant in float32 int8; do
    .venv/bin/python -m edge.testing.parity face --variant "$variant" --out "$OUT/x86-face-$variant.json" 2>/dev/null
    inside ".venv/bin/python -m edge.testing.parity face --variant $variant --out .cache/parity/arm64-face-$variant.json 2>/dev/null"
    cp "$ROOT$INSIDE/.cache/parity/arm64-face-$variant.json" "$OUT/"
    # across architectures the documented cross-arch bound applies (edge.testing.parity.CROSS_ARCH_TOLERANCE)
    tol=$(.venv/bin/python -c "from edge.testing.parity import CROSS_ARCH_TOLERANCE as t; print(t['$variant'])")
    .venv/bin/python -m edge.testing.parity compare --tolerance "$tol" "$OUT/x86-face-$variant.json" "$OUT/arm64-face-$variant.json" || failed=1
  done
  [ "$failed" -eq 0 ] || die "arm64 results differ from x86's beyond the documented tolerance (reports in $OUT)"
}

# ------------------------------------------------------------------ main

main() {
  local steps=("$@")
  [ ${#steps[@]} -gt 0 ] || steps=("${STEPS_ALL[@]}")
  mkdir -p "$OUT"
  case "${steps[0]}" in
    check)
      check_host
      say "this machine can run the lane (binfmt_misc with qemu-aarch64, chroot as root)"
      return
      ;;
    sh)
      # one command inside, in the project's copy (synced from the working tree first)
      [ ${#steps[@]} -eq 2 ] || die "usage: scripts/arm64.sh sh 'COMMAND'"
      [ -f "$ROOT/.lane-ready" ] || die "no arm64 root at $ROOT: run scripts/arm64.sh root first"
      check_host
      lock_root
      stale_mounts
      trap unmount_root EXIT
      host_config
      mount_root
      sync_repo
      inside "${steps[1]}"
      return
      ;;
    clean)
      [ -d "$ROOT" ] || return 0
      lock_root
      stale_mounts
      say "removing $ROOT"
      rm -rf --one-file-system "$ROOT"
      return
      ;;
  esac
  for s in "${steps[@]}"; do
    case "$s" in root | setup | models | demo | tests | parity) ;; *) die "unknown step '$s'; steps: ${STEPS_ALL[*]}, check, clean" ;; esac
  done
  [ -x .venv/bin/python ] || bash scripts/setup.sh # the x86 side of the comparisons
  check_host
  local t0 t
  t0=$(now)
  : >"$OUT/times.txt"
  lock_root
  stale_mounts
  trap unmount_root EXIT
  for s in "${steps[@]}"; do
    t=$(now)
    if [ "$s" = root ]; then
      make_root
    else
      [ -f "$ROOT/.lane-ready" ] || die "no arm64 root at $ROOT: run scripts/arm64.sh root first"
      if [ ${#MOUNTS[@]} -eq 0 ]; then
        host_config
        mount_root
        sync_repo
      fi
      "step_$s"
      kill_inside
    fi
    say "step $s: $(took "$t") s"
    echo "$s $(took "$t")" >>"$OUT/times.txt"
  done
  say "all steps passed in $(took "$t0") s (${steps[*]}; QEMU_CPU=$QEMU_CPU)"
  echo "total $(took "$t0")" >>"$OUT/times.txt"
}

main "$@"
