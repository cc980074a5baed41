#!/usr/bin/env bash
# CI for mcr's packages, unit and Ansible role. Run as root on a Debian machine with Rust;
# systemd need not be PID 1. Installs what it needs from Debian's archive (systemd for
# systemd-analyze, rpm, ansible-core, strace, iproute2, groff-base, python3, prometheus
# for promtool).
#
#   1. scripts/package builds the .deb and the .rpm.
#   2. The .deb is installed with dpkg -i: files, conffile, user/group, /run/mcr, man page,
#      `mcr --version`, `mcr check` on the shipped config, `systemd-analyze verify` and
#      `security` on the installed unit.
#   3. The installed binary runs as the unit runs it: user mcr, exactly the unit's
#      capabilities and bounding set, no_new_privs (setpriv), ExecReload's command; under
#      strace, relaying real traffic between network namespaces, then reloading (by its
#      file watch) a config that adds an input interface. Every system call made must be
#      allowed by the unit's SystemCallFilter=, and the trace must show nothing the rest of
#      the sandbox forbids (address families, W+X memory, namespaces, writes outside
#      /run/mcr, ...). If mcr speaks sd_notify, READY=1 / RELOADING=1 + MONOTONIC_USEC /
#      READY=1 must come from the main pid, as Type=notify + NotifyAccess=main need.
#      What is not emulated: systemd's own mount namespace, seccomp and cgroup setup.
#   3b. The installed unit under a real systemd, PID 1 of its own pid/mount/net namespaces:
#      start (Type=notify), the ingress drop on (CAP_NET_ADMIN from the unit), traffic,
#      `systemctl reload`, SIGKILL and Restart=on-failure (the killed relay's nftables
#      table gone), stop.
#   4. /etc/mcr.toml is modified; the same .deb is reinstalled, then an upgrade to a newer
#      version is installed: the modification survives both. dpkg -r keeps the conffile,
#      dpkg --purge removes it.
#   5. The .rpm: file list, metadata, config(noreplace), scriptlets; its payload is
#      unpacked into a scratch root where the binary runs and checks the shipped config.
#   6. The Ansible role (example playbook and inventory) with ansible-core, local
#      connection, mcr_use_systemd=false: installs the .deb, templates and validates
#      /etc/mcr.toml; a second run changes nothing; a run with an invalid flow fails at
#      the validate step and leaves /etc/mcr.toml byte-identical.
#   7. The Prometheus alerting rules (`promtool check rules`, `promtool test rules`) and the
#      Grafana dashboard (valid JSON; every metric it and the rules query is one mcr serves).
#
# Idempotent; removes the package, namespaces and temporary files when it ends, whatever
# happened. Exits non-zero on the first failed check, after printing the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_LOCALHOST_WARNING=false \
    ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_RETRY_FILES_ENABLED=false

[ "$(id -u)" -eq 0 ] || { echo "ci-packaging: run as root (dpkg, network namespaces)" >&2; exit 1; }

t0=$(date +%s)
work=$(mktemp -d /tmp/mcr-ci-packaging.XXXXXX)
chmod 0755 "$work" # user mcr reads the test configs here
id=$$
NS_GEN=mcrpkg-gen-$id NS_RELAY=mcrpkg-relay-$id NS_SINK=mcrpkg-sink-$id
pids=()
results=()

summary() {
    echo
    echo "================ ci-packaging summary ($(($(date +%s) - t0))s) ================"
    local r
    for r in "${results[@]}"; do echo "$r"; done
}
cleanup() {
    local rc=$?
    set +e
    [ -n "${lab_pid:-}" ] && kill -KILL "$lab_pid" 2>/dev/null # systemd of step 3b: its namespace goes with it
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    for ns in "$NS_GEN" "$NS_RELAY" "$NS_SINK"; do ip netns del "$ns" 2>/dev/null; done
    if dpkg-query -W -f='${Status}' mcr 2>/dev/null | grep -qv "not-installed"; then
        dpkg --purge mcr >/dev/null 2>&1
    fi
    rm -rf "$work"
    summary
    if [ "$rc" -eq 0 ]; then
        echo "ci-packaging: all checks passed"
    else
        echo "ci-packaging: FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT

step() { echo; echo "=== $*"; }
pass() { results+=("PASS  $*"); echo "PASS  $*"; }
skip() { results+=("SKIP  $*"); echo "SKIP  $*"; }
fail() { results+=("FAIL  $*"); echo "FAIL  $*" >&2; exit 1; }
# expect NAME COMMAND...: the command must succeed.
expect() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
# wait_for SECONDS COMMAND...: poll every 0.1 s until the command succeeds.
wait_for() {
    local n=$(($1 * 10))
    shift
    while [ "$n" -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# ---------------------------------------------------------------------------------------
step "0. tools"
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v rpm >/dev/null || need+=(rpm)
command -v ansible-playbook >/dev/null || need+=(ansible-core)
command -v strace >/dev/null || need+=(strace)
command -v promtool >/dev/null || need+=(prometheus)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v unshare >/dev/null || need+=(util-linux)
command -v groff >/dev/null || need+=(groff-base)
[ -x /usr/bin/python3 ] || need+=(python3)
# The apt module of Ansible needs python3-apt for the system python.
/usr/bin/python3 -c 'import apt' 2>/dev/null || need+=(python3-apt)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
dpkg --purge mcr >/dev/null 2>&1 || true # a leftover from an interrupted run
rm -f /etc/mcr.toml.dpkg-*
echo "systemd-analyze: $(systemd-analyze --version | head -1)"
echo "rpm: $(rpm --version)"
echo "ansible: $(ansible-playbook --version | head -1)"

# ---------------------------------------------------------------------------------------
step "1. scripts/package"
scripts/package | tee "$work/package.out"
deb=$(sed -n 's/^deb: //p' "$work/package.out")
rpmfile=$(sed -n 's/^rpm: //p' "$work/package.out")
[ -f "$deb" ] && [ -f "$rpmfile" ] || fail "scripts/package printed the paths of a .deb and an .rpm"
pkgid=$(cargo pkgid)
version=${pkgid##*[#@]}
pass "scripts/package built $(basename "$deb") ($(du -h "$deb" | cut -f1)) and $(basename "$rpmfile") ($(du -h "$rpmfile" | cut -f1))"

# ---------------------------------------------------------------------------------------
step "2. dpkg -i $(basename "$deb")"
dpkg -i "$deb" </dev/null
pass "dpkg -i installs the .deb without systemd as PID 1"

expect "mcr --version prints 'mcr $version'" test "$(/usr/bin/mcr --version)" = "mcr $version"

for f in /usr/bin/mcr /etc/mcr.toml /lib/systemd/system/mcr.service \
    /usr/lib/sysusers.d/mcr.conf /usr/lib/tmpfiles.d/mcr.conf /usr/share/man/man1/mcr.1.gz \
    /usr/share/doc/mcr/LICENSE /usr/share/doc/mcr/CHANGELOG.md /usr/share/doc/mcr/copyright \
    /usr/share/mcr/keepalived/mcr-keepalived /usr/share/mcr/keepalived/keepalived.conf; do
    dpkg -L mcr | grep -qx "$f" && [ -f "$f" ] || fail "package installs $f"
done
pass "package installs binary, config, unit, sysusers/tmpfiles entries, man page, license, changelog"
expect "/etc/mcr.toml is a dpkg conffile" \
    bash -c "dpkg-query -W -f='\${Conffiles}' mcr | grep -q '^ /etc/mcr.toml '"
expect "/etc/mcr.toml is config/mcr.toml" cmp -s /etc/mcr.toml config/mcr.toml
expect "postinst created system user and group mcr" \
    bash -c 'getent passwd mcr >/dev/null && getent group mcr >/dev/null && [ "$(id -u mcr)" -lt 1000 ]'
expect "postinst created /run/mcr 0750 mcr:mcr" \
    test "$(stat -c '%a %U:%G' /run/mcr)" = "750 mcr:mcr"

/usr/bin/mcr check -c /etc/mcr.toml | tee "$work/check.out"
expect "mcr check -c /etc/mcr.toml passes on the shipped config" grep -q '^ok: ' "$work/check.out"

zcat /usr/share/man/man1/mcr.1.gz >"$work/mcr.1"
groff -ww -z -man "$work/mcr.1" 2>"$work/groff.err" || true
expect "man page renders without groff warnings" test ! -s "$work/groff.err"
cmds=$(/usr/bin/mcr --help | awk '/^Commands:/{c=1;next} /^$/{c=0} c{print $1}' | grep -vx help)
for c in $cmds; do
    grep -A1 -x '\.TP' "$work/mcr.1" | grep -qx "\.B $c" || fail "man page documents 'mcr $c' (in mcr --help)"
done
pass "man page documents every command of mcr --help: $(echo $cmds)"

unit=/lib/systemd/system/mcr.service
systemd-analyze verify "$unit" >"$work/verify.out" 2>&1 && verify_rc=0 || verify_rc=$?
cat "$work/verify.out"
expect "systemd-analyze verify $unit: exit 0, no warnings" \
    test "$verify_rc" -eq 0 -a ! -s "$work/verify.out"
systemd-analyze security --offline=yes "$unit" >"$work/security.out" 2>&1 || true
exposure=$(sed -n 's/.*Overall exposure level for mcr.service: \([0-9.]*\).*/\1/p' "$work/security.out")
expect "systemd-analyze security: exposure ${exposure:-?} <= 3.0" \
    awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 3.0) }'
for d in 'Type=notify' 'NotifyAccess=main' 'ExecStart=/usr/bin/mcr run -c /etc/mcr.toml' \
    'ExecReload=/usr/bin/mcr reload' 'LimitNOFILE=65536' 'User=mcr' 'NoNewPrivileges=yes' 'ProtectSystem=strict' \
    'RuntimeDirectory=mcr' 'RuntimeDirectoryMode=0750' \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET'; do
    grep -qxF "$d" "$unit" || fail "unit has $d"
done
pass "unit has Type=notify, NotifyAccess=main, ExecStart/ExecReload, User=mcr and the hardening"

# ---------------------------------------------------------------------------------------
step "3. the installed mcr, run as the unit runs it (user, capabilities, ExecReload, syscalls)"
# Capabilities and system call filter exactly as the installed unit says.
unit_val() { sed -n "s/^$1=//p" "$unit"; }
caps=$(unit_val AmbientCapabilities | tr ' ' '\n' | sed -n 's/^CAP_//p' | tr 'A-Z' 'a-z' | xargs)
[ -n "$caps" ] || fail "unit grants AmbientCapabilities"
capset=-all
capmask=0
for c in $caps; do
    capset+=",+$c"
    n=$(awk -v c="$c" '$0 ~ "define CAP_"toupper(c)" " {print $3}' /usr/include/linux/capability.h 2>/dev/null)
    case $c in net_raw) n=13 ;; net_admin) n=12 ;; esac
    [ -n "$n" ] || fail "know the number of capability $c"
    capmask=$((capmask | (1 << n)))
done
expect "unit's AmbientCapabilities equal its CapabilityBoundingSet ($caps)" \
    test "$(unit_val AmbientCapabilities)" = "$(unit_val CapabilityBoundingSet)"

for ns in "$NS_GEN" "$NS_RELAY" "$NS_SINK"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$NS_GEN" link add up0 type veth peer name mcr-in netns "$NS_RELAY"
ip -n "$NS_GEN" link add up1 type veth peer name mcr-in2 netns "$NS_RELAY"
ip -n "$NS_RELAY" link add mcr-out type veth peer name down0 netns "$NS_SINK"
ip -n "$NS_GEN" addr add 10.1.0.1/24 dev up0
ip -n "$NS_GEN" addr add 10.3.0.1/24 dev up1
ip -n "$NS_RELAY" addr add 10.1.0.2/24 dev mcr-in
ip -n "$NS_RELAY" addr add 10.3.0.2/24 dev mcr-in2
ip -n "$NS_RELAY" addr add 10.2.0.1/24 dev mcr-out
ip -n "$NS_SINK" addr add 10.2.0.2/24 dev down0
for l in up0 up1; do ip -n "$NS_GEN" link set "$l" up; done
for l in mcr-in mcr-in2 mcr-out; do ip -n "$NS_RELAY" link set "$l" up; done
ip -n "$NS_SINK" link set down0 up

# `watch` is left at its default (on), as in the shipped config. The control socket is in
# the package's /run/mcr, under a name of its own so that no other relay on this machine
# (tests, benchmarks) is disturbed or answers instead.
sock=/run/mcr/ci-packaging-$id.sock
cat >"$work/relay.toml" <<EOF
[relay]
workers = 1
stats_interval = "0s"
control_socket = "$sock"
metrics = "127.0.0.1:9810"   # inside the relay namespace
idle_after = "1h"            # strace is slow: flow 'one' stays active for the status check

[[flow]]
name = "one"
input = { interface = "mcr-in", group = "239.1.1.1", port = 5001 }
outputs = [{ interface = "mcr-out", group = "239.9.9.9", port = 5099 }]
EOF
chmod 0644 "$work/relay.toml"

# sd_notify listener: records "PID<TAB>message<TAB>CLOCK_MONOTONIC usec at receipt" for
# every line of every datagram, with the sender's pid from SCM_CREDENTIALS, as systemd
# sees it.
cat >"$work/notify.py" <<'EOF'
import os, socket, struct, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
with open(out, "a", buffering=1) as f:
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = 0
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        for line in msg.decode(errors="replace").splitlines():
            f.write(f"{pid}\t{line}\t{now}\n")
EOF
/usr/bin/python3 "$work/notify.py" "$work/notify.sock" "$work/notify.log" &
pids+=($!)
wait_for 5 test -S "$work/notify.sock" || fail "sd_notify listener started"
: >>"$work/notify.log"

# strace (root) -> setpriv drops to the unit's user and capabilities -> exec /usr/bin/mcr.
ip netns exec "$NS_RELAY" env NOTIFY_SOCKET="$work/notify.sock" \
    strace -f -qq -o "$work/trace" \
    setpriv --reuid=mcr --regid=mcr --init-groups \
    --inh-caps="$capset" --ambient-caps="$capset" --bounding-set="$capset" --no-new-privs \
    -- /usr/bin/mcr run -c "$work/relay.toml" >"$work/relay.out" 2>"$work/relay.err" &
tracer=$!
pids+=("$tracer")
mainpid=
wait_for 10 bash -c "pgrep -P $tracer -x mcr >/dev/null" && mainpid=$(pgrep -P "$tracer" -x mcr)
[ -n "$mainpid" ] || { cat "$work/relay.err"; fail "mcr started under setpriv"; }
ready() { grep -q "^$mainpid	READY=1	" "$work/notify.log" || grep -qi 'ready' "$work/relay.err"; }
wait_for 20 ready || { cat "$work/relay.err"; fail "mcr became ready as user mcr"; }
status=/proc/$mainpid/status
uid=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "$status")
eff=$(awk '/^CapEff:/ {print $2}' "$status")
bnd=$(awk '/^CapBnd:/ {print $2}' "$status")
nnp=$(awk '/^NoNewPrivs:/ {print $2}' "$status")
prm=$(awk '/^CapPrm:/ {print $2}' "$status")
want=$(printf '%016x' "$capmask")
# CAP_NET_ADMIN (12) stays permitted but not effective: mcr raises it only around the
# ingress drop's nftables transactions.
want_eff=$(printf '%016x' $((capmask & ~(1 << 12))))
expect "relay runs as uid $(id -u mcr) (mcr), permitted and bounding capabilities $want, effective $want_eff, no_new_privs" \
    test "$uid" = "$(id -u mcr) $(id -u mcr) $(id -u mcr) $(id -u mcr)" -a "$prm" = "$want" -a "$eff" = "$want_eff" -a "$bnd" = "$want" -a "$nnp" = 1

# relay_traffic NAME IN_IF_OF_GEN GROUP OUT_GROUP: 300 packets through the relay, all must arrive.
relay_traffic() {
    local name=$1 gen_if=$2 group=$3 out_group=$4 n=300
    rm -f "$work/sink.ready"
    ip netns exec "$NS_SINK" /usr/bin/mcr sink --interface down0 --group "$out_group" --port 5099 \
        --count $n --first-timeout 10s --ready-file "$work/sink.ready" >"$work/sink.out" 2>&1 &
    local sink=$!
    pids+=("$sink")
    wait_for 10 test -e "$work/sink.ready" || fail "$name: sink joined"
    ip netns exec "$NS_GEN" /usr/bin/mcr gen --interface "$gen_if" --group "$group" --port 5001 \
        --count $n --rate 1000 --size 200 >"$work/gen.out"
    wait "$sink" || true
    cat "$work/sink.out"
    grep -q "^received=$n .* lost=0 duplicates=0 reordered=0 corrupt=0" "$work/sink.out" ||
        { cat "$work/relay.err"; fail "$name"; }
    pass "$name"
}
relay_traffic "as user mcr: 239.1.1.1 on mcr-in relayed to 239.9.9.9, 300/300 packets" \
    up0 239.1.1.1 239.9.9.9

# The control socket in the RuntimeDirectory, used by root.
expect "control socket $sock: a socket, mode 0660, group mcr" \
    test "$(stat -c '%F %a %G' "$sock" 2>/dev/null)" = "socket 660 mcr"
/usr/bin/mcr status -s "$sock" >"$work/status.out" && rc=0 || rc=$?
cat "$work/status.out"
/usr/bin/mcr stats -s "$sock" --json >"$work/stats.json" || true
expect "mcr status and mcr stats --json answer over the socket (pid $mainpid, flow 'one' counted 300 packets, ingress drop on)" \
    /usr/bin/python3 -c '
import json, sys
rc, status, stats, pid = int(sys.argv[1]), open(sys.argv[2]).read(), json.load(open(sys.argv[3])), sys.argv[4]
one = [f for f in stats["flows"] if f["name"] == "one"]
assert rc == 0 and f"pid:            {pid}" in status, (rc, status)
assert "ingress drop:   on: 1 keys on 1 interfaces" in status, status
assert one and one[0]["packets"] == 300, json.dumps(stats)[:300]
' "$rc" "$work/status.out" "$work/stats.json" "$mainpid"

# The Prometheus endpoint, so that its listener's system calls are traced too.
expect "metrics endpoint (user mcr, in the relay namespace) serves mcr_flow_packets_total" \
    bash -c "ip netns exec '$NS_RELAY' /usr/bin/python3 -c '
import urllib.request
body = urllib.request.urlopen(\"http://127.0.0.1:9810/metrics\", timeout=5).read().decode()
assert \"mcr_flow_packets_total\" in body, body[:500]
'"

# `systemctl reload` runs ExecReload as the unit's user; this relay's socket is not the
# default one, hence --socket. The file is unchanged: exit 0, nothing to do.
reload_cmd=$(unit_val ExecReload)
as_unit_user() { setpriv --reuid=mcr --regid=mcr --init-groups "$@"; }
# shellcheck disable=SC2086 # the unit's command line, split as systemd splits it
as_unit_user $reload_cmd --socket "$sock" >"$work/reload.out" 2>&1 && rc=0 || rc=$?
cat "$work/reload.out"
expect "ExecReload ($reload_cmd) as user mcr: the relay re-read its config (unchanged), exit 0" \
    bash -c "[ $rc -eq 0 ] && grep -q unchanged '$work/reload.out'"
# A broken file: ExecReload fails with the error at PATH:LINE:COL, so `systemctl reload`
# (and an Ansible handler) fails visibly; the running table stays.
cp "$work/relay.toml" "$work/relay.toml.good"
printf '[relay]\nworkers = "two"\n' >"$work/relay.toml.bad"
chmod 0644 "$work/relay.toml.bad"
mv -f "$work/relay.toml.bad" "$work/relay.toml"
# shellcheck disable=SC2086
as_unit_user $reload_cmd --socket "$sock" >"$work/reload.out" 2>&1 && rc=0 || rc=$?
cat "$work/reload.out"
expect "ExecReload on a broken file: exit 1 with the error at $work/relay.toml:2:" \
    bash -c "[ $rc -eq 1 ] && grep -q 'relay.toml:2:' '$work/reload.out'"
mv -f "$work/relay.toml.good" "$work/relay.toml"

# Replace the file by rename, as Ansible's template module does: mcr's own watch reloads it
# (the no-systemd mode of the Ansible role relies on this). The new table adds a flow on a
# new input interface, which needs CAP_NET_RAW again, as user mcr.
cat >"$work/relay.toml.new" <<EOF
[relay]
workers = 1
stats_interval = "0s"
control_socket = "$sock"
metrics = "127.0.0.1:9810"   # inside the relay namespace

[[flow]]
name = "one"
input = { interface = "mcr-in", group = "239.1.1.1", port = 5001 }
outputs = [{ interface = "mcr-out", group = "239.9.9.9", port = 5099 }]

[[flow]]
name = "two"
input = { interface = "mcr-in2", group = "239.1.1.2", port = 5001 }
outputs = [{ interface = "mcr-out", group = "239.9.9.10", port = 5099 }]
EOF
chmod 0644 "$work/relay.toml.new"
mv -f "$work/relay.toml.new" "$work/relay.toml"
wait_for 10 grep -qi 'reloaded' "$work/relay.err" ||
    { cat "$work/relay.err"; fail "replacing the config file made mcr reload it (watch)"; }
pass "replacing the config by rename made the relay (user mcr) reload it by itself"
relay_traffic "after the reload: new input interface mcr-in2 opened without root, 300/300 packets" \
    up1 239.1.1.2 239.9.9.10
/usr/bin/mcr reload -s "$sock" >"$work/reload.out" 2>&1 && rc=0 || rc=$?
cat "$work/reload.out"
expect "mcr reload over the control socket: exit 0" test "$rc" -eq 0

kill -TERM "$mainpid"
wait "$tracer" && relay_rc=0 || relay_rc=$?
expect "SIGTERM stops the relay with exit 0 (Restart=on-failure leaves it stopped)" test "$relay_rc" -eq 0

# sd_notify, when mcr implements it.
if grep -q NOTIFY_SOCKET /usr/bin/mcr; then
    cat "$work/notify.log"
    expect "sd_notify: READY=1 with a STATUS= line, sent by the main pid" \
        bash -c "grep -q '^$mainpid	READY=1	' '$work/notify.log' && grep -q '^$mainpid	STATUS=..*	' '$work/notify.log'"
    expect "sd_notify: on reload RELOADING=1 + MONOTONIC_USEC (CLOCK_MONOTONIC, within 5 s), then READY=1" \
        awk -F'\t' -v p="$mainpid" '
            $1 == p && $2 == "RELOADING=1" { r = 1 }
            $1 == p && r && $2 ~ /^MONOTONIC_USEC=[0-9]+$/ {
                d = substr($2, 16) - $3; if (d < 0) d = -d; if (d < 5000000) m = 1 }
            $1 == p && r && m && $2 == "READY=1" { ok = 1 }
            END { exit !ok }' "$work/notify.log"
    expect "sd_notify: STOPPING=1 at shutdown" grep -q "^$mainpid	STOPPING=1	" "$work/notify.log"
    expect "sd_notify: every message came from the main pid (NotifyAccess=main)" \
        awk -F'\t' -v p="$mainpid" '$1 != p { bad = 1 } END { exit bad }' "$work/notify.log"
else
    skip "sd_notify: /usr/bin/mcr does not mention NOTIFY_SOCKET yet (Type=notify needs READY=1)"
fi

# Every system call made after exec of /usr/bin/mcr must be in the unit's filter.
expand_filter() { # names and @groups -> syscall names, recursively
    local x
    for x in "$@"; do
        case $x in
        @*) systemd-analyze syscall-filter "$x" | awk 'NR > 1 && !/^ *#/ && NF { print $1 }' |
            while read -r y; do expand_filter "$y"; done ;;
        *) echo "$x" ;;
        esac
    done
}
# shellcheck disable=SC2046
expand_filter $(unit_val SystemCallFilter | tr ' ' '\n' | grep -v '^~') | sort -u >"$work/allowed"
# Also taken away by other settings of the unit: PrivateDevices (@raw-io), ProtectClock
# (@clock), ProtectKernelModules (@module), ProtectKernelLogs (syslog).
{ expand_filter @raw-io @clock @module; echo syslog; } | sort -u >"$work/removed"
comm -23 "$work/allowed" "$work/removed" >"$work/allowed.final"
awk '
    $2 ~ /^execve\("\/usr\/bin\/mcr"/ { on = 1 }
    on && match($2, /^[a-z0-9_]+\(/) { print substr($2, 1, RLENGTH - 1) }
' "$work/trace" | sort -u >"$work/used"
comm -23 "$work/used" "$work/allowed.final" >"$work/denied"
echo "system calls made by mcr: $(wc -l <"$work/used"): $(tr '\n' ' ' <"$work/used")"
expect "strace saw io_uring_setup and io_uring_enter (egress exercised)" \
    bash -c "grep -qx io_uring_setup '$work/used' && grep -qx io_uring_enter '$work/used'"
if [ -s "$work/denied" ]; then
    fail "every system call mcr made is allowed by the unit's SystemCallFilter (denied: $(tr '\n' ' ' <"$work/denied"))"
fi
pass "all $(wc -l <"$work/used") system calls mcr made (start, traffic, reload, stop) are allowed by SystemCallFilter"

# The rest of the unit's sandbox cannot be applied without systemd as PID 1, but the trace
# shows whether mcr did anything it forbids.
cat >"$work/sandbox.py" <<'EOF'
import re, sys
trace, families, work = sys.argv[1], set(sys.argv[2].split()), sys.argv[3]
dev_ok = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}
write_ok = ("/run/mcr/", "/tmp/", "/var/tmp/", "/dev/shm/", "/proc/self/", "/proc/thread-self/")
bad, on = [], False
for line in open(trace):
    m = re.match(r"^\d+\s+([a-z0-9_]+)\((.*)", line)
    if not m:
        continue
    name, args = m.groups()
    if name == "execve" and args.startswith('"/usr/bin/mcr"'):
        on = True
    if not on:
        continue
    why = None
    if name in ("socket", "socketpair"):
        fam = args.split(",")[0]
        if fam not in families:
            why = f"RestrictAddressFamilies: {fam}"
    elif name == "mmap" and "PROT_WRITE" in args and "PROT_EXEC" in args:
        why = "MemoryDenyWriteExecute: writable and executable mapping"
    elif name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in args:
        why = "MemoryDenyWriteExecute: mprotect(PROT_EXEC)"
    elif (name in ("clone", "clone3", "unshare") and "CLONE_NEW" in args) or name == "setns":
        why = "RestrictNamespaces"
    elif name in ("sched_setscheduler", "sched_setattr") and re.search("SCHED_(FIFO|RR|DEADLINE)", args):
        why = "RestrictRealtime"
    elif name == "personality":
        why = "LockPersonality"
    elif name in ("open", "openat", "openat2", "creat"):
        pm = re.search(r'"([^"]*)"', args)
        path = pm.group(1) if pm else ""
        writes = name == "creat" or re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args)
        if path.startswith(("/home/", "/root/", "/run/user/")):
            why = "ProtectHome"
        elif path.startswith("/dev/") and path not in dev_ok:
            why = "PrivateDevices"
        elif writes and path not in dev_ok and not path.startswith(write_ok + (work,)):
            why = "ProtectSystem=strict: write outside /run/mcr and /tmp"
    if why:
        bad.append(f"{why}: {line.strip()[:160]}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
families=$(unit_val RestrictAddressFamilies)
if /usr/bin/python3 "$work/sandbox.py" "$work/trace" "$families" "$work" >"$work/sandbox.out"; then
    pass "trace: sockets only of $families; no W+X memory, namespaces, realtime, personality; no /home or device access; no writes outside /run/mcr"
else
    cat "$work/sandbox.out"
    fail "trace: mcr did something the unit's sandbox forbids"
fi

for ns in "$NS_GEN" "$NS_RELAY" "$NS_SINK"; do ip netns del "$ns"; done

# ---------------------------------------------------------------------------------------
step "3b. the installed unit under a real systemd (PID 1 of its own namespaces)"
# systemd boots an empty target in fresh pid, mount, UTS and network namespaces with
# private /run, /tmp and /var/tmp; the rest of the file system is this machine's, so it
# loads the installed mcr.service. A drop-in points it at a test config in the lab's /run.
# Checked for real: Type=notify start, the unit's capabilities (the ingress drop needs
# CAP_NET_ADMIN), `systemctl reload`, Restart=on-failure after SIGKILL (and the killed
# relay's nftables table gone with it), stop.
lab_name=mcr-ci-lab-$id
sd_bin=$(command -v systemd || echo /lib/systemd/systemd)
{
    echo 'set -e'
    echo 'mount --make-rprivate /'
    echo 'for d in /run /tmp /var/tmp; do mount -t tmpfs tmpfs $d; done'
    # The lab's journal stays in the lab, not in this machine's /var/log/journal.
    echo '[ ! -d /var/log/journal ] || mount -t tmpfs tmpfs /var/log/journal'
    echo 'mkdir -p /run/systemd/system/mcr.service.d'
    echo "printf '[Unit]\\nDescription=$lab_name\\nDefaultDependencies=no\\nAllowIsolate=yes\\n' >/run/systemd/system/lab.target"
    echo "printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/mcr run -c /run/mcr-lab.toml\\n' >/run/systemd/system/mcr.service.d/lab.conf"
    echo "exec -a $lab_name $sd_bin --system --unit=lab.target"
} >"$work/lab-boot.sh"
setsid unshare --pid --fork --mount --mount-proc --uts --net bash "$work/lab-boot.sh" >/dev/null 2>&1 </dev/null &
pids+=($!)
lab_pid=
lab_up() {
    lab_pid=$(pgrep -f "^$lab_name" | head -1)
    [ -n "$lab_pid" ] || return 1
    case $(nsenter -t "$lab_pid" -m -p systemctl is-system-running 2>/dev/null) in
    running | degraded) return 0 ;;
    *) return 1 ;;
    esac
}
wait_for 30 lab_up || fail "systemd came up as PID 1 of the lab"
lab() { nsenter -t "$lab_pid" -m -p -n -u "$@"; }
pass "systemd $(lab systemctl --version | head -1 | cut -d' ' -f2) runs as PID 1 of the lab (host pid $lab_pid)"

lab ip link set lo up
lab ip netns add gen
lab ip netns add sink
lab ip link add mcr-in type veth peer name up0 netns gen
lab ip link add mcr-out type veth peer name down0 netns sink
lab ip addr add 10.1.0.2/24 dev mcr-in
lab ip addr add 10.2.0.1/24 dev mcr-out
lab ip -n gen addr add 10.1.0.1/24 dev up0
lab ip -n sink addr add 10.2.0.2/24 dev down0
for l in mcr-in mcr-out; do lab ip link set "$l" up; done
lab ip -n gen link set up0 up
lab ip -n sink link set down0 up
# lab_config FLOW...: each FLOW "NAME GROUP_IN GROUP_OUT"; written by rename, as editors do.
lab_config() {
    local f name gin gout
    {
        printf '[relay]\nworkers = 1\nstats_interval = "0s"\n'
        for f in "$@"; do
            read -r name gin gout <<<"$f"
            printf '[[flow]]\nname = "%s"\ninput = { interface = "mcr-in", group = "%s", port = 5001 }\n' "$name" "$gin"
            printf 'outputs = [{ interface = "mcr-out", group = "%s", port = 5099 }]\n' "$gout"
        done
    } | lab sh -c 'cat >/run/mcr-lab.toml.new && chmod 0644 /run/mcr-lab.toml.new && mv -f /run/mcr-lab.toml.new /run/mcr-lab.toml'
}
# lab_traffic NAME GROUP_IN GROUP_OUT: 300 packets through the unit's relay, all must arrive.
lab_traffic() {
    local name=$1 n=300
    lab rm -f /run/sink.ready
    lab ip netns exec sink /usr/bin/mcr sink --interface down0 --group "$3" --port 5099 \
        --count $n --first-timeout 10s --ready-file /run/sink.ready >"$work/lab-sink.out" 2>&1 &
    local sink=$!
    pids+=("$sink")
    wait_for 10 lab test -e /run/sink.ready || fail "$name: sink joined"
    lab ip netns exec gen /usr/bin/mcr gen --interface up0 --group "$2" --port 5001 \
        --count $n --rate 1000 --size 200 >/dev/null
    wait "$sink" || true
    grep -q "^received=$n .* lost=0 duplicates=0 reordered=0 corrupt=0" "$work/lab-sink.out" ||
        { cat "$work/lab-sink.out"; lab journalctl -u mcr --no-pager | tail -20; fail "$name"; }
    pass "$name"
}
main_pid() { lab systemctl show -p MainPID --value mcr; }
# mcr status exits 3 while a flow is idle (no traffic yet): only its text matters here.
drop_keys() {
    local out
    out=$(lab /usr/bin/mcr status 2>/dev/null || true)
    grep -q "^ingress drop:   on: $1 keys" <<<"$out"
}
mcr_tables() { lab nft list tables 2>/dev/null | grep 'netdev mcr_' | sort | xargs; }
started() { lab systemctl start mcr && lab systemctl is-active -q mcr; }
reloaded() { lab systemctl reload mcr && drop_keys 2; }
stopped() { ! lab systemctl is-active -q mcr && [ -z "$(mcr_tables)" ]; }

lab_config "a 239.1.1.1 239.9.9.1"
expect "systemctl start mcr (Type=notify: returns once READY=1), active" started
pid1=$(main_pid)
first_up() { drop_keys 1 && [ "$(mcr_tables)" = "table netdev mcr_$pid1" ]; }
expect "the unit's relay (pid $pid1) has its ingress drop on (CAP_NET_ADMIN raised when needed): 1 key, table mcr_$pid1" \
    first_up
lab_traffic "under systemd: 239.1.1.1 relayed to 239.9.9.1, 300/300 packets" 239.1.1.1 239.9.9.1

lab_config "a 239.1.1.1 239.9.9.1" "b 239.1.1.2 239.9.9.2"
expect "systemctl reload mcr: applied (flow b added), the drop follows (2 keys)" reloaded
lab_traffic "after systemctl reload: 239.1.1.2 relayed to 239.9.9.2, 300/300 packets" 239.1.1.2 239.9.9.2

lab kill -KILL "$pid1"
restarted() {
    local p
    p=$(main_pid)
    [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$pid1" ] && lab systemctl is-active -q mcr && drop_keys 2
}
expect "SIGKILL: Restart=on-failure brings a new relay, its drop on (2 keys)" wait_for 20 restarted
pid2=$(main_pid)
expect "the killed relay's table (mcr_$pid1) went with it: only mcr_$pid2 is left" \
    test "$(mcr_tables)" = "table netdev mcr_$pid2"
lab_traffic "after the restart: 239.1.1.1 relayed to 239.9.9.1, 300/300 packets" 239.1.1.1 239.9.9.1
lab systemctl stop mcr
expect "systemctl stop mcr: inactive, no nftables table left" stopped
kill -KILL "$lab_pid" 2>/dev/null || true

# ---------------------------------------------------------------------------------------
step "4. conffile kept on reinstall and upgrade; remove and purge"
marker="# ci-packaging: local change $id"
echo "$marker" >>/etc/mcr.toml
before=$(sha /etc/mcr.toml)
dpkg -i "$deb" </dev/null
expect "reinstalling the same .deb keeps the modified /etc/mcr.toml" \
    bash -c "grep -qxF '$marker' /etc/mcr.toml && [ \"\$(sha256sum </etc/mcr.toml | cut -d' ' -f1)\" = '$before' ]"

# An upgrade: the same package with a higher version, repacked with dpkg-deb.
debver=$(dpkg-deb -f "$deb" Version)
dpkg-deb -R "$deb" "$work/upgrade"
sed -i "s/^Version: .*/Version: ${debver}+ci1/" "$work/upgrade/DEBIAN/control"
dpkg-deb --root-owner-group -b "$work/upgrade" "$work/mcr-upgrade.deb" >/dev/null
dpkg -i "$work/mcr-upgrade.deb" </dev/null
expect "upgrading ${debver} -> ${debver}+ci1 keeps the modified /etc/mcr.toml, without .dpkg-* files" \
    bash -c "[ \"\$(dpkg-query -W -f='\${Version}' mcr)\" = '${debver}+ci1' ] &&
             grep -qxF '$marker' /etc/mcr.toml && ! ls /etc/mcr.toml.dpkg-* >/dev/null 2>&1"
expect "mcr check still passes on the kept config" /usr/bin/mcr check -c /etc/mcr.toml

dpkg -r mcr </dev/null
expect "dpkg -r removes the binary and unit, keeps the modified conffile" \
    bash -c "[ ! -e /usr/bin/mcr ] && [ ! -e $unit ] && grep -qxF '$marker' /etc/mcr.toml"
dpkg --purge mcr </dev/null
expect "dpkg --purge removes /etc/mcr.toml and the package" \
    bash -c "[ ! -e /etc/mcr.toml ] && ! dpkg-query -W -f='\${Status}' mcr 2>/dev/null | grep -q installed"

# ---------------------------------------------------------------------------------------
step "5. rpm $(basename "$rpmfile")"
rpm -qip "$rpmfile" | tee "$work/rpm.info"
rpm -qlp "$rpmfile" | tee "$work/rpm.files"
rpm_field() { sed -n "s/^$1 *: //p" "$work/rpm.info"; }
expect "rpm -qip: Name mcr, Version $version, License MIT OR Apache-2.0" \
    test "$(rpm_field Name)" = mcr -a "$(rpm_field Version)" = "$version" -a "$(rpm_field License)" = "MIT OR Apache-2.0"
for f in /usr/bin/mcr /etc/mcr.toml /usr/lib/systemd/system/mcr.service \
    /usr/lib/sysusers.d/mcr.conf /usr/lib/tmpfiles.d/mcr.conf /usr/share/man/man1/mcr.1.gz \
    /usr/share/doc/mcr/LICENSE /usr/share/doc/mcr/CHANGELOG.md \
    /usr/share/mcr/keepalived/mcr-keepalived /usr/share/mcr/keepalived/keepalived.conf; do
    grep -qx "$f" "$work/rpm.files" || fail "rpm -qlp lists $f"
done
pass "rpm -qlp lists binary, config, unit, sysusers/tmpfiles entries, man page, license, changelog"
expect "rpm -qcp: /etc/mcr.toml is the one config file" test "$(rpm -qcp "$rpmfile")" = /etc/mcr.toml
rpm -qp --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmfile" >"$work/rpm.flags"
expect "rpm: /etc/mcr.toml is %config(noreplace), /usr/bin/mcr is 0755" \
    bash -c "grep -qx -- '-rw-r--r-- cn /etc/mcr.toml' '$work/rpm.flags' &&
             grep -q -- '^-rwxr-xr-x .* /usr/bin/mcr\$' '$work/rpm.flags'"
rpm -qp --scripts "$rpmfile" >"$work/rpm.scripts"
expect "rpm scriptlets: %post runs systemd-sysusers and systemd-tmpfiles, %preun stops on erase" \
    bash -c "grep -q 'systemd-sysusers /usr/lib/sysusers.d/mcr.conf' '$work/rpm.scripts' &&
             grep -q 'systemd-tmpfiles --create' '$work/rpm.scripts' &&
             grep -q 'disable --now mcr.service' '$work/rpm.scripts'"
mkdir -p "$work/rpmroot"
rpm --root "$work/rpmroot" --initdb
rpm --root "$work/rpmroot" -i --nodeps --noscripts --nosignature "$rpmfile"
expect "rpm payload: unpacked binary runs and checks the unpacked /etc/mcr.toml" \
    bash -c "'$work/rpmroot/usr/bin/mcr' check -c '$work/rpmroot/etc/mcr.toml' | grep -q '^ok: '"
expect "rpm payload: the unit and the config are the repository's files" \
    bash -c "cmp -s '$work/rpmroot/usr/lib/systemd/system/mcr.service' packaging/systemd/mcr.service &&
             cmp -s '$work/rpmroot/etc/mcr.toml' config/mcr.toml"

# ---------------------------------------------------------------------------------------
step "6. Ansible role (ansible-core, local connection, mcr_use_systemd=false)"
cd "$root/packaging/ansible"
playbook() { # LOG EXTRA-ARGS...
    local log=$1
    shift
    ansible-playbook -i inventory/hosts.yml site.yml \
        -e "mcr_deb_path=$deb" -e mcr_use_systemd=false -e ansible_become=false "$@" \
        </dev/null >"$log" 2>&1
}
recap() { sed -n 's/^localhost *: //p' "$1"; }
ansible-playbook -i inventory/hosts.yml site.yml --syntax-check >/dev/null
pass "ansible-playbook --syntax-check site.yml"

playbook "$work/ansible1.log" && rc=0 || rc=$?
cat "$work/ansible1.log"
expect "first run succeeds: package installed, /etc/mcr.toml templated ($(recap "$work/ansible1.log"))" \
    bash -c "[ $rc -eq 0 ] && dpkg-query -W -f='\${Status}' mcr | grep -q 'install ok installed' &&
             grep -q 'changed=[1-9]' <<<'$(recap "$work/ansible1.log")'"
/usr/bin/mcr check -c /etc/mcr.toml | tee "$work/check2.out"
expect "templated /etc/mcr.toml passes mcr check: the inventory's 4 flows, SSM source, unicast address, dscp, local_delivery and rtp rendered" \
    bash -c "grep -q '^ok: 4 flows' '$work/check2.out' && grep -qF 'source = \"10.0.0.5\"' /etc/mcr.toml &&
             grep -qF 'address = \"192.0.2.20\"' /etc/mcr.toml && grep -qF 'dscp = 46' /etc/mcr.toml &&
             grep -qx 'local_delivery = true' /etc/mcr.toml && grep -qx 'rtp = true' /etc/mcr.toml &&
             grep -qx 'rtp_clock_rate = 90000' /etc/mcr.toml"
good=$(sha /etc/mcr.toml)

playbook "$work/ansible2.log" && rc=0 || rc=$?
cat "$work/ansible2.log"
expect "second identical run: $(recap "$work/ansible2.log")" \
    bash -c "[ $rc -eq 0 ] && grep -q 'changed=0 .*failed=0' <<<'$(recap "$work/ansible2.log")'"

bad='{"mcr_flows": [{"name": "bad", "input": {"interface": "eth0", "group": "239.1.1.1", "port": 70000},
      "outputs": [{"interface": "eth1", "group": "239.9.9.9", "port": 5099}]}]}'
playbook "$work/ansible3.log" -e "$bad" && rc=0 || rc=$?
cat "$work/ansible3.log"
expect "run with port 70000 fails at the validate step, mcr check's PATH:LINE:COL error shown" \
    bash -c "[ $rc -ne 0 ] && grep -q 'failed to validate' '$work/ansible3.log' &&
             grep -Eq ':[0-9]+:[0-9]+: .*port' '$work/ansible3.log' &&
             grep -q 'failed=1' <<<'$(recap "$work/ansible3.log")'"
expect "after the failed run /etc/mcr.toml is byte-identical (sha256 ${good:0:16}...)" \
    test "$(sha /etc/mcr.toml)" = "$good"

pair='{"mcr_keepalived": {"interface": "eth1", "priority": 150, "virtual_router_id": 51,
       "vip": "192.0.2.100/24"}}'
playbook "$work/ansible4.log" -e "$pair" && rc=0 || rc=$?
cat "$work/ansible4.log"
expect "a pair member: keepalived installed, keepalived.conf with mcr's hooks and the priority" \
    bash -c "[ $rc -eq 0 ] && command -v keepalived >/dev/null &&
             grep -qF 'notify \"/usr/share/mcr/keepalived/mcr-keepalived notify\"' /etc/keepalived/keepalived.conf &&
             grep -qF 'script \"/usr/share/mcr/keepalived/mcr-keepalived check\"' /etc/keepalived/keepalived.conf &&
             grep -qE '^ +priority 150$' /etc/keepalived/keepalived.conf &&
             [ -x /usr/share/mcr/keepalived/mcr-keepalived ]"
# keepalived's own config test: everything but the interface, which this machine lacks.
keepalived -t -l -f /etc/keepalived/keepalived.conf >"$work/ka-t.out" 2>&1 || true
cat "$work/ka-t.out"
expect "keepalived -t reports nothing but the missing interface eth1" \
    bash -c "! grep -v -e 'interface eth1' -e 'Non-existent interface' -e '^\$' '$work/ka-t.out' | grep -q ."
cd "$root"

step "7. Prometheus alerting rules and Grafana dashboard (packaging/prometheus, packaging/grafana)"
expect "promtool check rules packaging/prometheus/mcr-alerts.yml" \
    promtool check rules "$root/packaging/prometheus/mcr-alerts.yml"
expect "promtool test rules: each alert fires on its trigger and stays quiet otherwise" \
    bash -c "cd '$root/packaging/prometheus' && promtool test rules mcr-alerts.test.yml"
# Every metric a dashboard query or an alert uses is one that src/metrics.rs registers.
expect "the dashboard is valid JSON and it and the alerts query only metrics mcr exports" \
    /usr/bin/python3 - "$root" <<'PY'
import json, re, sys
root = sys.argv[1]
names = re.findall(r'r\.register\(\s*"([a-z_]+)"', open(f"{root}/src/metrics.rs").read())
served = {f"mcr_{n}{suffix}" for n in names for suffix in ("", "_total", "_info")}
dash = json.load(open(f"{root}/packaging/grafana/mcr-dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
exprs += re.findall(r"expr: (.*)", open(f"{root}/packaging/prometheus/mcr-alerts.yml").read())
used = {m for e in exprs for m in re.findall(r"\b(mcr_[a-z_]+)", e)}
unknown = used - served
assert names and exprs and not unknown, f"unknown metrics: {sorted(unknown)}"
PY

dpkg --purge mcr </dev/null >/dev/null
expect "package purged at the end" bash -c "! dpkg-query -W -f='\${Status}' mcr 2>/dev/null | grep -q installed"
