package controllers

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// NodeConfig is the per-ordinal YAML file given to the node with --config. Per-ordinal
// settings (the other nodes to dial, this node's public addresses) cannot live in the
// StatefulSet's shared pod template, and the contract's YAML keys are exactly the flags.
type NodeConfig struct {
	Bootstrap []string `json:"bootstrap,omitempty"`
	Announce  []string `json:"announce,omitempty"`
}

// nodeArgs are the panda-node arguments shared by all ordinals (docs/node-contract.md).
// $(POD_NAME) is expanded by the kubelet from the downward-API env var.
func nodeArgs(pn *pandav1.PandaNetwork) []string {
	return []string{
		"run",
		"--config=" + ConfigDir + "/$(POD_NAME).yaml",
		"--data-dir=" + DataDir,
		"--key-file=" + IdentityDir + "/$(POD_NAME).key",
		"--network-id=" + pn.Spec.NetworkID,
		"--topics-file=" + TopicsDir + "/" + TopicsKey,
		// Empty host: Go listens on both IPv4 and IPv6 where the pod has both, and on the
		// one family an IPv4-only or IPv6-only cluster gives it (0.0.0.0 would be
		// unreachable on IPv6-only clusters, [::] fails where IPv6 is disabled).
		fmt.Sprintf("--admin-listen=:%d", AdminPort),
		"--admin-token-file=" + AdminDir + "/" + AdminTokenKey,
		fmt.Sprintf("--metrics-listen=:%d", MetricsPort),
		// libp2p on both families: a listen address whose family the pod lacks fails
		// alone, the node starts as long as one succeeds.
		fmt.Sprintf("--listen=/ip4/0.0.0.0/tcp/%d", P2PPort),
		fmt.Sprintf("--listen=/ip4/0.0.0.0/udp/%d/quic-v1", P2PPort),
		fmt.Sprintf("--listen=/ip6/::/tcp/%d", P2PPort),
		fmt.Sprintf("--listen=/ip6/::/udp/%d/quic-v1", P2PPort),
		"--mdns=false",
		"--public",
		"--relay-service=" + strconv.FormatBool(relayEnabled(pn)),
		"--log-format=" + logFormat(pn),
	}
}

// BuildPodTemplate returns the node pod template. Topics (a Secret: topic ids are read
// capabilities) and per-ordinal config (a ConfigMap) are mounted as whole volumes (no
// subPath), so kubelet refreshes them in place (the same atomic ..data symlink swap for
// Secret and ConfigMap volumes)
// and changing them never touches this template: pods never restart for topic changes,
// nor when public addresses become known (a LoadBalancer IP arrives, a pod lands on a
// node), because nodes apply the announce and bootstrap keys of their config file live.
func BuildPodTemplate(pn *pandav1.PandaNetwork, image string) corev1.PodTemplateSpec {
	annotations := map[string]string{}
	for k, v := range pn.Spec.PodAnnotations {
		annotations[k] = v
	}
	if v := pn.Annotations[RestartAnnotation]; v != "" {
		annotations[RestartAnnotation] = v
	}
	if len(annotations) == 0 {
		annotations = nil
	}
	labels := map[string]string{}
	for k, v := range pn.Spec.PodLabels {
		labels[k] = v
	}
	// The operator's labels win: the StatefulSet selects pods by them.
	for k, v := range commonLabels(pn) {
		labels[k] = v
	}
	probe := func(path string, period, timeout, failure int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromString("metrics"), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: period, TimeoutSeconds: timeout, FailureThreshold: failure, SuccessThreshold: 1,
		}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			// Nodes never talk to the Kubernetes API.
			AutomountServiceAccountToken: ptr.To(false),
			// Longer than the node's own shutdown timeout, so the kubelet's SIGKILL never
			// cuts the store flush short.
			TerminationGracePeriodSeconds: ptr.To(int64(TerminationGracePeriodSeconds)),
			NodeSelector:                  pn.Spec.NodeSelector,
			Tolerations:                   pn.Spec.Tolerations,
			Affinity:                      podAffinity(pn),
			TopologySpreadConstraints:     topologySpread(pn),
			ImagePullSecrets:              pn.Spec.ImagePullSecrets,
			ServiceAccountName:            pn.Spec.ServiceAccountName,
			PriorityClassName:             pn.Spec.PriorityClassName,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To(nodeUID),
				RunAsGroup:     ptr.To(nodeUID),
				FSGroup:        ptr.To(nodeUID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            nodeContainer,
				Image:           image,
				ImagePullPolicy: pn.Spec.ImagePullPolicy,
				// No command: the image's ENTRYPOINT is panda-node, wherever the
				// Dockerfile installs it.
				Args: nodeArgs(pn),
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				},
				Ports: []corev1.ContainerPort{
					{Name: "p2p-tcp", ContainerPort: P2PPort, Protocol: corev1.ProtocolTCP},
					{Name: "p2p-udp", ContainerPort: P2PPort, Protocol: corev1.ProtocolUDP},
					{Name: "metrics", ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP},
					{Name: "admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
				},
				Resources: pn.Spec.Resources,
				// docs/node-contract.md "Probes". Startup: /healthz says "starting" until the
				// store is open (migrations, the start-up count) and the topics are open; up
				// to StartupProbeSeconds, then the kubelet restarts a start that hangs.
				// Liveness: the node's watchdog answers within 5 s; 6 misses in a row (a
				// minute hung) restart it. Readiness: store writable, host listening and,
				// after a start, caught up with the peers (at most --ready-catch-up-timeout,
				// 2 min), so a rolling update waits for the restarted node to hold the data.
				StartupProbe:   probe("/healthz", 5, 3, StartupProbeSeconds/5),
				LivenessProbe:  probe("/healthz", 10, 8, 6),
				ReadinessProbe: probe("/readyz", 10, 3, 3),
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					RunAsNonRoot:             ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: dataVolume, MountPath: DataDir},
					{Name: "identity", MountPath: IdentityDir, ReadOnly: true},
					{Name: "admin-token", MountPath: AdminDir, ReadOnly: true},
					{Name: "topics", MountPath: TopicsDir, ReadOnly: true},
					{Name: "config", MountPath: ConfigDir, ReadOnly: true},
					{Name: "tmp", MountPath: "/tmp"},
				},
			}},
			Volumes: []corev1.Volume{
				// 0440 + fsGroup: the non-root node user reads the keys, nobody else (the
				// kubelet adds group read for fsGroup to any mode; the node accepts 0440 on
				// a read-only mount without a warning). Every pod mounts every ordinal's
				// key and reads its own: one trust domain, see docs/node-contract.md.
				{Name: "identity", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: identitySecretName(pn), DefaultMode: ptr.To(int32(0o440))}}},
				{Name: "admin-token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: adminSecretName(pn), DefaultMode: ptr.To(int32(0o440)),
					Items: []corev1.KeyToPath{{Key: AdminTokenKey, Path: AdminTokenKey}}}}},
				// Only the topics file: the Secret's other keys (topics last read from
				// topicsFrom Secrets) are the operator's bookkeeping.
				{Name: "topics", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName: topicsSecretName(pn), DefaultMode: ptr.To(int32(0o440)),
					Items: []corev1.KeyToPath{{Key: TopicsKey, Path: TopicsKey}}}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: configConfigMapName(pn)}}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
}

// StartupProbeSeconds bounds a node's start (store open, migrations, opening the topics)
// before the kubelet restarts it.
const StartupProbeSeconds = 600

// NodeShutdownTimeout is panda-node's bound on its graceful shutdown in seconds: the
// admin drain (adminDrainTimeout) then closing the node and flushing the store
// (nodeCloseTimeout), one after the other (cmd/node/run.go).
const NodeShutdownTimeout = 10 + 30

// TerminationGracePeriodSeconds of node pods: the node's shutdown bound plus a margin for
// process exit.
const TerminationGracePeriodSeconds = NodeShutdownTimeout + 15

// podAffinity is spec.affinity, or by default a soft anti-affinity that prefers putting
// the nodes of one network on different Kubernetes nodes (hard anti-affinity would leave
// pods Pending on small clusters).
func podAffinity(pn *pandav1.PandaNetwork) *corev1.Affinity {
	if pn.Spec.Affinity != nil {
		return pn.Spec.Affinity
	}
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(pn)},
				TopologyKey:   corev1.LabelHostname,
			},
		}},
	}}
}

// topologySpread is spec.topologySpreadConstraints, or by default a soft spread over
// zones (ScheduleAnyway: clusters without zone labels still schedule).
func topologySpread(pn *pandav1.PandaNetwork) []corev1.TopologySpreadConstraint {
	if len(pn.Spec.TopologySpreadConstraints) > 0 {
		return pn.Spec.TopologySpreadConstraints
	}
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       corev1.LabelTopologyZone,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: selectorLabels(pn)},
	}}
}

// BuildVolumeClaimTemplate is the per-node data volume (immutable once the StatefulSet exists).
func BuildVolumeClaimTemplate(pn *pandav1.PandaNetwork) corev1.PersistentVolumeClaim {
	size := resource.MustParse("1Gi")
	if pn.Spec.Storage.Size != nil {
		size = *pn.Spec.Storage.Size
	}
	return corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: dataVolume, Labels: selectorLabels(pn)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: pn.Spec.Storage.StorageClassName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
}

// RolloutMinReadySeconds is the StatefulSet's minReadySeconds (see BuildStatefulSet).
const RolloutMinReadySeconds = 15

// BuildStatefulSet returns the desired StatefulSet. The reconciler copies only mutable
// fields onto an existing object (see mutateStatefulSet).
func BuildStatefulSet(pn *pandav1.PandaNetwork, image string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: statefulSetName(pn), Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(desiredReplicas(pn)),
			Selector:    &metav1.LabelSelector{MatchLabels: selectorLabels(pn)},
			ServiceName: headlessServiceName(pn),
			// Nodes have no primary/replica roles: start and stop them all at once.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			// A restarted pod counts as available only after it has been Ready this long, so a
			// rolling update never takes the next node before edges have redialled the previous
			// one (they retry a lost bootstrap peer after 1, 2, 4, 8 s; a dial may take up to
			// 15 s). Without it a 3-node rollout took ~8 s on a real cluster and edges lost every
			// bootstrap peer at once.
			MinReadySeconds: RolloutMinReadySeconds,
			// One pod at a time (maxUnavailable for StatefulSets is still feature-gated).
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To(int32(0))},
			},
			// Synced data survives scale-down and deletion unless the user removes the PVCs.
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
			Template:             BuildPodTemplate(pn, image),
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{BuildVolumeClaimTemplate(pn)},
		},
	}
}

func servicePorts(port int32) []corev1.ServicePort {
	return []corev1.ServicePort{
		{Name: "p2p-tcp", Port: port, TargetPort: intstr.FromInt32(P2PPort), Protocol: corev1.ProtocolTCP},
		{Name: "p2p-udp", Port: port, TargetPort: intstr.FromInt32(P2PPort), Protocol: corev1.ProtocolUDP},
	}
}

// BuildHeadlessService gives every pod a stable DNS name (<pod>.<name>-headless.<ns>.svc),
// including not-ready pods so peers and the operator can reach a node while it starts.
func BuildHeadlessService(pn *pandav1.PandaNetwork) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: headlessServiceName(pn), Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 selectorLabels(pn),
			Ports: append(servicePorts(P2PPort),
				corev1.ServicePort{Name: "metrics", Port: MetricsPort, TargetPort: intstr.FromInt32(MetricsPort), Protocol: corev1.ProtocolTCP},
				corev1.ServicePort{Name: "admin", Port: AdminPort, TargetPort: intstr.FromInt32(AdminPort), Protocol: corev1.ProtocolTCP},
			),
		},
	}
}

// BuildNodeService is the per-ordinal Service carrying TCP and UDP on the same port. Only
// the libp2p port is exposed: the admin API stays on the headless Service, never public.
func BuildNodeService(pn *pandav1.PandaNetwork, ordinal int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: nodeName(pn, ordinal), Namespace: pn.Namespace,
			Labels: nodeServiceLabels(pn, ordinal), Annotations: pn.Spec.Exposure.Annotations,
		},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeClusterIP,
			Selector:                 map[string]string{appsv1.StatefulSetPodNameLabel: nodeName(pn, ordinal)},
			Ports:                    servicePorts(exposurePort(pn)),
			PublishNotReadyAddresses: true,
		},
	}
	switch exposureType(pn) {
	case pandav1.ExposureNodePort:
		svc.Spec.Type = corev1.ServiceTypeNodePort
	case pandav1.ExposureLoadBalancer:
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
		svc.Spec.LoadBalancerClass = pn.Spec.Exposure.LoadBalancerClass
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		svc.Spec.ExternalTrafficPolicy = pn.Spec.Exposure.ExternalTrafficPolicy
		if svc.Spec.ExternalTrafficPolicy == "" {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
	}
	return svc
}

// BuildPDB allows one voluntary disruption at a time. maxUnavailable (not minAvailable)
// so a single-replica network can still be drained.
func BuildPDB(pn *pandav1.PandaNetwork) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: pdbName(pn), Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(pn)},
		},
	}
}

// RenderTopicPolicy renders a TopicReplica's writers, quota and retention in the topics
// file's policy syntax (docs/policy.md), "" when it sets none.
func RenderTopicPolicy(spec *pandav1.TopicReplicaSpec) string {
	var parts []string
	if len(spec.Writers) > 0 {
		parts = append(parts, "writers="+strings.Join(spec.Writers, ","))
	}
	limit := func(prefix string, l *pandav1.TopicLimit) {
		if l == nil {
			return
		}
		if l.Operations != nil {
			parts = append(parts, fmt.Sprintf("%s-ops=%d", prefix, *l.Operations))
		}
		if l.Bytes != nil {
			parts = append(parts, fmt.Sprintf("%s-bytes=%d", prefix, l.Bytes.Value()))
		}
	}
	if q := spec.Quota; q != nil {
		limit("author", q.PerAuthor)
		limit("topic", q.PerTopic)
	}
	if r := spec.Retention; r != nil {
		if r.MaxAge != nil {
			parts = append(parts, "max-age="+r.MaxAge.Duration.String())
		}
		if r.MaxBytes != nil {
			parts = append(parts, fmt.Sprintf("max-bytes=%d", r.MaxBytes.Value()))
		}
	}
	return strings.Join(parts, " ")
}

func sortedValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// RenderTopicsFile renders the topics file format of the contract.
func RenderTopicsFile(topics []string) string {
	var b strings.Builder
	b.WriteString("# Managed by panda-operator from TopicReplica objects; edits are overwritten.\n")
	for _, t := range topics {
		b.WriteString(t)
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseTopicsFile reads topics back (blank lines and comments ignored).
func ParseTopicsFile(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out
}

// BuildConfigConfigMap renders one NodeConfig YAML per ordinal.
func BuildConfigConfigMap(pn *pandav1.PandaNetwork, cfgs map[int32]NodeConfig) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: configConfigMapName(pn), Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Data:       map[string]string{},
	}
	for ordinal, cfg := range cfgs {
		b, err := yaml.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("render config of %s: %w", nodeName(pn, ordinal), err)
		}
		cm.Data[configFileKey(pn, ordinal)] = string(b)
	}
	return cm, nil
}

// InClusterAddrs are the multiaddrs of a node through its per-node Service DNS name.
func InClusterAddrs(pn *pandav1.PandaNetwork, ordinal int32, peerID string) []string {
	return withPeer(addressStrings(clusterAddrs(pn, ordinal)), peerID)
}

// clusterAddrs are the per-node Service's DNS addresses (without /p2p).
func clusterAddrs(pn *pandav1.PandaNetwork, ordinal int32) []pandav1.NodeAddress {
	host := fmt.Sprintf("%s.%s.svc", nodeName(pn, ordinal), pn.Namespace)
	port := exposurePort(pn)
	return []pandav1.NodeAddress{
		{Address: fmt.Sprintf("/dns4/%s/tcp/%d", host, port), Type: pandav1.AddressClusterDNS},
		{Address: fmt.Sprintf("/dns4/%s/udp/%d/quic-v1", host, port), Type: pandav1.AddressClusterDNS},
	}
}

// withPeer appends /p2p/<id> to every address (addresses without a peer id are useless
// to dialers: the handshake checks the remote's key).
func withPeer(addrs []string, peerID string) []string {
	if peerID == "" {
		return nil
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, strings.TrimSuffix(a, "/")+"/p2p/"+peerID)
	}
	return out
}

// withPeerTyped is withPeer keeping each address's type.
func withPeerTyped(addrs []pandav1.NodeAddress, peerID string) []pandav1.NodeAddress {
	if peerID == "" {
		return nil
	}
	out := make([]pandav1.NodeAddress, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, pandav1.NodeAddress{Address: strings.TrimSuffix(a.Address, "/") + "/p2p/" + peerID, Type: a.Type})
	}
	return out
}

// hostMultiaddrPrefix turns an IP or DNS name into the first multiaddr component.
func hostMultiaddrPrefix(host string) string {
	switch {
	case strings.Contains(host, ":"):
		return "/ip6/" + host
	case isIPv4(host):
		return "/ip4/" + host
	default:
		return "/dns/" + host
	}
}

func isIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 {
			return false
		}
	}
	return true
}

// NodeHost is the address of the Kubernetes node a pod runs on, with its kind.
type NodeHost struct {
	Address string
	Type    pandav1.AddressType
}

// PublicAddrs computes the externally reachable multiaddrs (without /p2p) of one node:
// explicit spec.exposure.publicAddresses win; otherwise LoadBalancer ingress on the
// Service port, or the pod's node address on the allocated node ports. host is the
// address of the (ready) node the pod runs on, zero if unknown.
func PublicAddrs(pn *pandav1.PandaNetwork, ordinal int32, svc *corev1.Service, host NodeHost) []pandav1.NodeAddress {
	for _, pa := range pn.Spec.Exposure.PublicAddresses {
		if pa.Ordinal == ordinal {
			out := make([]pandav1.NodeAddress, 0, len(pa.Addresses))
			for _, a := range pa.Addresses {
				out = append(out, pandav1.NodeAddress{Address: a, Type: pandav1.AddressStatic})
			}
			return out
		}
	}
	if svc == nil {
		return nil
	}
	var tcpPort, udpPort int32
	switch exposureType(pn) {
	case pandav1.ExposureLoadBalancer:
		var out []pandav1.NodeAddress
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			h := ing.IP
			if h == "" {
				h = ing.Hostname
			}
			if h == "" {
				continue
			}
			p := hostMultiaddrPrefix(h)
			out = append(out,
				pandav1.NodeAddress{Address: fmt.Sprintf("%s/tcp/%d", p, exposurePort(pn)), Type: pandav1.AddressLoadBalancer},
				pandav1.NodeAddress{Address: fmt.Sprintf("%s/udp/%d/quic-v1", p, exposurePort(pn)), Type: pandav1.AddressLoadBalancer})
		}
		return out
	case pandav1.ExposureNodePort:
		if host.Address == "" {
			return nil
		}
		for _, p := range svc.Spec.Ports {
			switch p.Protocol {
			case corev1.ProtocolTCP:
				tcpPort = p.NodePort
			case corev1.ProtocolUDP:
				udpPort = p.NodePort
			}
		}
		var out []pandav1.NodeAddress
		prefix := hostMultiaddrPrefix(host.Address)
		if tcpPort != 0 {
			out = append(out, pandav1.NodeAddress{Address: fmt.Sprintf("%s/tcp/%d", prefix, tcpPort), Type: host.Type})
		}
		if udpPort != 0 {
			out = append(out, pandav1.NodeAddress{Address: fmt.Sprintf("%s/udp/%d/quic-v1", prefix, udpPort), Type: host.Type})
		}
		return out
	}
	return nil
}

// addressStrings returns the multiaddrs of typed addresses.
func addressStrings(addrs []pandav1.NodeAddress) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Address)
	}
	return out
}

// BuildNodeConfigs gives each ordinal the other ordinals' in-cluster addresses plus the
// user's external bootstrap peers, and its own public addresses to announce.
func BuildNodeConfigs(pn *pandav1.PandaNetwork, peerIDs map[int32]string, announce map[int32][]pandav1.NodeAddress) map[int32]NodeConfig {
	n := desiredReplicas(pn)
	out := make(map[int32]NodeConfig, n)
	for i := int32(0); i < n; i++ {
		var cfg NodeConfig
		for j := int32(0); j < n; j++ {
			if j != i {
				// TCP only: one address per peer is enough to find it, identify
				// exchanges the rest.
				cfg.Bootstrap = append(cfg.Bootstrap, InClusterAddrs(pn, j, peerIDs[j])[:1]...)
			}
		}
		cfg.Bootstrap = append(cfg.Bootstrap, pn.Spec.BootstrapPeers...)
		if len(announce[i]) > 0 {
			cfg.Announce = addressStrings(announce[i])
		}
		out[i] = cfg
	}
	return out
}
