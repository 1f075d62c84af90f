#!/usr/bin/env bash
# A real single-node Kubernetes directly on this host, for `make test-cluster` and for users
# without kind (docs: README "Run it on a real cluster", design: real-cluster.md).
#
#   hack/cluster/cluster.sh up      start it; prints the kubeconfig path on stdout
#   hack/cluster/cluster.sh down    stop it and leave nothing behind
#   hack/cluster/cluster.sh status  exit 0 when it is up
#   hack/cluster/cluster.sh pvs     (re)create the hostPath PersistentVolumes; frees Released ones
#
# Needs root and: containerd, runc, containernetworking-plugins, iptables, conntrack (Debian
# packages), docker (to build the pause image), the Kubernetes binaries of `make envtest`
# (K8S_BIN) and CoreDNS (COREDNS; built with go install when missing).
#
# Everything runs as a host process: a private containerd (own root, state and socket; it never
# touches a system containerd), etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy and CoreDNS. The pod network is one bridge (kcbr0, 10.244.0.1/24) that this
# script creates; the API server, the kubelet's node IP, NodePorts and CoreDNS all use the bridge
# IP, so no traffic leaves the machine. Every process's PID is recorded in $CLUSTER_DIR/pids;
# `down` stops exactly those (plus the containerd shims of our own socket), unmounts what is under
# $CLUSTER_DIR, deletes the KUBE-*/CNI-* iptables chains and the kube-proxy nft tables, removes the
# bridge and restores the sysctls the components changed.
#
# Host-specific settings and why (each was a blocker on this kind of machine):
#   - cgroup v1 without systemd: kubelet failCgroupV1=false, cgroupDriver=cgroupfs;
#   - no CAP_SYS_RESOURCE: containerd restrict_oom_score_adj=true and kubelet oomScoreAdj=0,
#     otherwise runc cannot create any sandbox;
#   - no registry: the sandbox (pause) image is built here, FROM scratch;
#   - endpoints reject loopback: the API server advertises the bridge IP.
# Client certificates: one cluster-admin certificate is shared by the components. This is a
# disposable test cluster on one host, not a production setup.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/pandanet-cluster}
K8S_BIN=${K8S_BIN:-$root/bin/k8s/1.37.2-linux-amd64}
CACHE=${CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pandanet/cluster}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
COREDNS=${COREDNS:-$CACHE/coredns-$COREDNS_VERSION/coredns}
DOCKER=${DOCKER:-docker}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
BRIDGE=${CLUSTER_BRIDGE:-kcbr0}
BRIDGE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
NODE_NAME=${CLUSTER_NODE_NAME:-pandanet-node}
PAUSE_IMAGE=pandanet.local/pause:1
PV_COUNT=${CLUSTER_PV_COUNT:-12}
ETCD_PORT=12379
ETCD_PEER_PORT=12380
API_PORT=6443

pki=$CLUSTER_DIR/pki
logs=$CLUSTER_DIR/logs
pids=$CLUSTER_DIR/pids
sock=$CLUSTER_DIR/containerd/containerd.sock
kubeconfig=$CLUSTER_DIR/admin.kubeconfig
# Sysctls the kubelet, kube-proxy and this script change; saved at `up`, restored at `down`.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
	net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet)

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$kubeconfig" "$@"; }

preflight() {
	[ "$(id -u)" = 0 ] || die "must run as root (it creates a bridge, mounts and iptables rules)"
	local missing=()
	for c in containerd containerd-shim-runc-v2 runc ctr iptables iptables-save iptables-restore conntrack ip openssl "$DOCKER"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	for p in bridge host-local portmap firewall loopback; do
		[ -x "$CNI_BIN/$p" ] || missing+=("$CNI_BIN/$p")
	done
	for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
		[ -x "$K8S_BIN/$b" ] || missing+=("$K8S_BIN/$b (make envtest)")
	done
	[ "${#missing[@]}" = 0 ] || die "missing: ${missing[*]} (Debian: apt-get install containerd runc containernetworking-plugins iptables conntrack nftables docker.io)"
}

# start NAME LOGNAME CMD...: runs CMD in the background, records its PID.
start() {
	local name=$1; shift
	setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
	echo "$name $!" >>"$pids"
	log "started $name (pid $!)"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2; shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $end ]; then
			log "$what not ready after ${secs}s; last log lines:"
			tail -n 30 "$logs"/*.log >&2 || true
			return 1
		fi
		sleep 0.5
	done
}

gen_pki() {
	mkdir -p "$pki"
	cd "$pki"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 \
		-subj "/CN=pandanet-test-ca" 2>/dev/null
	cat >apiserver.ext <<EOF
subjectAltName=IP:$BRIDGE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
	openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 7 -extfile apiserver.ext 2>/dev/null
	echo "extendedKeyUsage=clientAuth" >client.ext
	openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=pandanet-admin" 2>/dev/null
	openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 7 -extfile client.ext 2>/dev/null
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cd - >/dev/null
	cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pandanet
  cluster:
    server: https://$BRIDGE_IP:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: pandanet
  context: {cluster: pandanet, user: admin}
current-context: pandanet
EOF
	chmod 600 "$kubeconfig"
}

# What the kubelet creates outside the work dir, if it did not exist before: removed by down.
record_host_paths() {
	: >"$CLUSTER_DIR/created"
	# The kubelet keeps device-plugin sockets in /var/lib/kubelet whatever --root-dir says.
	for p in /var/lib/kubelet /var/log/pods /var/log/containers; do
		[ -e "$p" ] || echo "$p" >>"$CLUSTER_DIR/created"
	done
	for c in /sys/fs/cgroup/*/; do
		[ -e "${c}kubepods" ] || echo "${c}kubepods" >>"$CLUSTER_DIR/created"
	done
}

save_sysctls() {
	: >"$CLUSTER_DIR/sysctls"
	for s in "${SYSCTLS[@]}"; do
		v=$(sysctl -n "$s" 2>/dev/null) && printf '%s=%s\n' "$s" "$v" >>"$CLUSTER_DIR/sysctls"
	done
}

make_bridge() {
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
	fi
	ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	sysctl -qw net.ipv4.ip_forward=1
	# Replies between two pods on the bridge after a Service DNAT must pass iptables.
	sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "warning: net.bridge.bridge-nf-call-iptables not settable (pod -> Service -> pod on the same bridge may fail)"
}

write_cni() {
	mkdir -p "$CLUSTER_DIR/cni/net.d" "$CLUSTER_DIR/cni/ipam"
	cat >"$CLUSTER_DIR/cni/net.d/10-pandanet.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pandanet",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$CLUSTER_DIR/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
}

build_pause() {
	local bin=$CACHE/pause/pause
	if [ ! -x "$bin" ] || [ "$here/pause/main.go" -nt "$bin" ]; then
		mkdir -p "$CACHE/pause"
		(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin" ./hack/cluster/pause)
	fi
	if ! "$DOCKER" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 || [ "$bin" -nt "$CACHE/pause/.imported" ]; then
		local ctx
		ctx=$(mktemp -d)
		cp "$bin" "$ctx/pause"
		printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
		DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null 2>"$logs/pause-build.log" ||
			{ cat "$logs/pause-build.log" >&2; rm -rf "$ctx"; die "building the pause image failed"; }
		rm -rf "$ctx"
	fi
	"$DOCKER" save "$PAUSE_IMAGE" | ctr --address "$sock" -n k8s.io images import - >/dev/null
	touch "$CACHE/pause/.imported"
}

build_coredns() {
	[ -x "$COREDNS" ] && return
	log "building CoreDNS $COREDNS_VERSION from the Go module proxy (once; cached in $(dirname "$COREDNS"))"
	mkdir -p "$(dirname "$COREDNS")"
	GOBIN=$(dirname "$COREDNS") CGO_ENABLED=0 go install "github.com/coredns/coredns@$COREDNS_VERSION"
}

start_containerd() {
	mkdir -p "$CLUSTER_DIR/containerd"
	cat >"$CLUSTER_DIR/containerd/config.toml" <<EOF
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$CLUSTER_DIR/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$CLUSTER_DIR/cni/net.d"
EOF
	start containerd containerd --config "$CLUSTER_DIR/containerd/config.toml"
	wait_for containerd 30 ctr --address "$sock" version
}

start_control_plane() {
	start etcd "$K8S_BIN/etcd" --name default --data-dir "$CLUSTER_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
		--unsafe-no-fsync
	start kube-apiserver "$K8S_BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--advertise-address "$BRIDGE_IP" --bind-address "$BRIDGE_IP" --secure-port "$API_PORT" \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
		--authorization-mode Node,RBAC \
		--kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
		--kubelet-preferred-address-types InternalIP \
		--allow-privileged=true
	wait_for kube-apiserver 90 kubectl get --raw /readyz
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
		--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
		--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
		--use-service-account-credentials=true --leader-elect=false \
		--bind-address 127.0.0.1 --secure-port 0
	start kube-scheduler "$K8S_BIN/kube-scheduler" \
		--kubeconfig "$kubeconfig" --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
		--leader-elect=false --bind-address 127.0.0.1 --secure-port 0
}

start_node() {
	mkdir -p "$CLUSTER_DIR/kubelet"
	: >"$CLUSTER_DIR/kubelet/resolv.conf" # pods get cluster DNS only, never the host's resolvers
	cat >"$CLUSTER_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
failSwapOn: false
protectKernelDefaults: false
staticPodPath: ""
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$BRIDGE_IP]
resolvConf: $CLUSTER_DIR/kubelet/resolv.conf
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
podLogsDir: $CLUSTER_DIR/pod-logs
EOF
	start kubelet "$K8S_BIN/kubelet" --config "$CLUSTER_DIR/kubelet/config.yaml" \
		--kubeconfig "$kubeconfig" --root-dir "$CLUSTER_DIR/kubelet/root" \
		--cert-dir "$CLUSTER_DIR/kubelet/pki" --node-ip "$BRIDGE_IP" --hostname-override "$NODE_NAME"
	cat >"$CLUSTER_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $BRIDGE_IP
healthzBindAddress: 127.0.0.1:19256
metricsBindAddress: 127.0.0.1:19249
nodePortAddresses: ["$BRIDGE_IP/32"]
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
	start kube-proxy "$K8S_BIN/kube-proxy" --config "$CLUSTER_DIR/kube-proxy.yaml"
	# CoreDNS as a host process on the bridge IP (the pods' clusterDNS): no image needed, and it
	# answers nothing outside cluster.local, so no query ever leaves the machine.
	cat >"$CLUSTER_DIR/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $BRIDGE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $kubeconfig pandanet
        pods insecure
        ttl 5
        fallthrough in-addr.arpa ip6.arpa
    }
}
.:53 {
    bind $BRIDGE_IP
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
	start coredns "$COREDNS" -conf "$CLUSTER_DIR/Corefile"
	wait_for "node $NODE_NAME Ready" 120 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
}

make_pvs() {
	# Pre-made hostPath volumes owned by the pods' user (65532): the kubelet applies no fsGroup
	# to hostPath. No StorageClass: claims without a class bind to these class-less volumes.
	local i dir phase
	mkdir -p "$CLUSTER_DIR/pv"
	for i in $(seq 0 $((PV_COUNT - 1))); do
		dir=$CLUSTER_DIR/pv/pv$i
		phase=$(kubectl get pv "pandanet-pv$i" -o jsonpath='{.status.phase}' 2>/dev/null || true)
		if [ "$phase" = Released ] || [ "$phase" = Failed ]; then
			kubectl delete pv "pandanet-pv$i" --wait=true >/dev/null
			phase=""
		fi
		[ -n "$phase" ] && continue
		rm -rf "$dir" && mkdir -p "$dir" && chown 65532:65532 "$dir" && chmod 0770 "$dir"
		kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pandanet-pv$i
  labels: {pandanet.io/test-cluster: "true"}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $dir, type: Directory}
EOF
	done
}

up() {
	preflight
	if status >/dev/null 2>&1; then
		log "already up"
		echo "$kubeconfig"
		return
	fi
	[ ! -e "$pids" ] || die "$CLUSTER_DIR holds a cluster that is not healthy; run '$0 down' first"
	mkdir -p "$CLUSTER_DIR" "$logs" "$CACHE"
	: >"$pids"
	local t0=$SECONDS
	save_sysctls
	record_host_paths
	gen_pki
	make_bridge
	write_cni
	build_coredns
	start_containerd
	build_pause
	start_control_plane
	start_node
	make_pvs
	# Every component must still run (one that exits after a bad flag would go unnoticed).
	status || die "a component exited during start-up (logs in $logs)"
	wait_for "kube-proxy rules" 60 sh -c 'iptables-save -t nat | grep -q KUBE-SERVICES'
	log "up in $((SECONDS - t0))s; export KUBECONFIG=$kubeconfig"
	echo "$kubeconfig"
}

status() {
	[ -s "$pids" ] || return 1
	local name pid
	while read -r name pid; do
		kill -0 "$pid" 2>/dev/null || { log "$name (pid $pid) is not running"; return 1; }
	done <"$pids"
	kubectl get --raw /readyz >/dev/null
}

# Our containerd's shims: their command line names our socket, so no other containerd's are hit.
our_shims() {
	local p
	for p in /proc/[0-9]*; do
		{ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $sock " && basename "$p"
	done
	return 0
}

stop_pid() {
	local name=$1 pid=$2 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 40); do
		kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }
		sleep 0.25
	done
	kill -KILL "$pid" 2>/dev/null || true
	log "killed $name (pid $pid)"
}

down() {
	[ "$(id -u)" = 0 ] || die "must run as root"
	local name pid
	if [ -s "$pids" ]; then
		# Let the kubelet stop the pods (CNI DEL frees addresses and veths) while it still runs.
		if kubectl get --raw /readyz >/dev/null 2>&1 && grep -q '^kubelet ' "$pids"; then
			# No controller may re-create what is deleted: stop them first.
			for name in kube-controller-manager kube-scheduler; do
				pid=$(awk -v n="$name" '$1==n{print $2}' "$pids")
				[ -z "$pid" ] || stop_pid "$name" "$pid"
			done
			kubectl delete pods --all -A --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
			local end=$((SECONDS + 60))
			while [ $SECONDS -lt $end ]; do
				[ -z "$(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null)" ] && break
				sleep 1
			done
		fi
		# Reverse start order: node first, containerd last.
		tac "$pids" | while read -r name pid; do
			[ "$name" = containerd ] && continue
			stop_pid "$name" "$pid"
		done
		if [ -S "$sock" ]; then
			for c in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
				ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
			done
		fi
		pid=$(awk '$1=="containerd"{print $2}' "$pids")
		[ -z "$pid" ] || stop_pid containerd "$pid"
		for pid in $(our_shims); do stop_pid containerd-shim "$pid"; done
	fi
	# libcni keeps a result per attachment in /var/lib/cni/results even with our own conf dir;
	# the kubelet's CNI DEL removes them, this catches pods that were killed instead.
	rm -f /var/lib/cni/results/pandanet-* 2>/dev/null || true
	if [ -d "$CLUSTER_DIR/containerd/root" ]; then
		for id in $(ls "$CLUSTER_DIR/containerd/state/io.containerd.grpc.v1.cri/sandboxes" 2>/dev/null); do
			rm -f "/var/lib/cni/results/cni-loopback-$id-lo"
		done
	fi
	# Pod log links the kubelet makes in the fixed /var/log/containers, pointing into our dir.
	for l in /var/log/containers/*.log; do
		[ -L "$l" ] && case "$(readlink "$l")" in "$CLUSTER_DIR"/*) rm -f "$l" ;; esac
	done
	# cgroups and directories the kubelet created outside the work dir (recorded at up).
	if [ -f "$CLUSTER_DIR/created" ]; then
		while read -r p; do
			case "$p" in
			/sys/fs/cgroup/*) [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} + 2>/dev/null ;;
			*) rm -rf "$p" ;;
			esac
			[ ! -e "$p" ] || log "warning: could not remove $p"
		done <"$CLUSTER_DIR/created"
	fi
	# Mounts under the work dir (netns, overlay snapshots, pod volumes), deepest first.
	if [ -d "$CLUSTER_DIR" ]; then
		awk -v d="$CLUSTER_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"
		done
	fi
	# iptables: every KUBE-*/CNI-* chain and the rules that jump to them; other rules (Docker's)
	# are written back unchanged.
	for ipt in iptables ip6tables; do
		command -v "$ipt-save" >/dev/null || continue
		for table in filter nat mangle raw; do
			if "$ipt-save" -t "$table" 2>/dev/null | grep -qE 'KUBE-|CNI-'; then
				"$ipt-save" -t "$table" | grep -vE 'KUBE-|CNI-' | "$ipt-restore" -T "$table" ||
					log "warning: could not clean $ipt table $table"
			fi
		done
	done
	if command -v nft >/dev/null; then
		for fam in ip ip6; do nft delete table "$fam" kube-proxy 2>/dev/null || true; done
	fi
	# Conntrack entries of the pod network, so a new cluster starts clean.
	conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
	conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
	# Pods' veths went with their namespaces; the bridge is ours.
	ip link del "$BRIDGE" 2>/dev/null || true
	if [ -f "$CLUSTER_DIR/sysctls" ]; then
		while IFS='=' read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || log "warning: cannot restore $k=$v"; done <"$CLUSTER_DIR/sysctls"
	fi
	if [ "${CLUSTER_KEEP_DIR:-0}" = 1 ]; then
		rm -f "$pids"
		log "down; logs kept in $logs"
	else
		rm -rf "$CLUSTER_DIR"
		log "down"
	fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
pvs) make_pvs ;;
*) echo "usage: $0 up|down|status|pvs" >&2; exit 2 ;;
esac
