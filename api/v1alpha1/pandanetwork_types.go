package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExposureType says how a node's libp2p port is reachable from outside the cluster.
// +kubebuilder:validation:Enum=None;NodePort;LoadBalancer
type ExposureType string

const (
	ExposureNone         ExposureType = "None"
	ExposureNodePort     ExposureType = "NodePort"
	ExposureLoadBalancer ExposureType = "LoadBalancer"
)

// PublicAddresses pins the externally reachable multiaddrs of one node (ordinal), for
// setups where the operator cannot discover them (static IPs, DNS names, port forwards).
type PublicAddresses struct {
	// Ordinal is the StatefulSet ordinal of the node.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=63
	Ordinal int32 `json:"ordinal"`

	// Addresses are multiaddrs without the /p2p/<peer id> suffix, e.g.
	// /ip4/203.0.113.7/tcp/4001 or /dns4/node0.example.org/udp/4001/quic-v1.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(a, a.startsWith('/') && !a.contains('/p2p/'))",message="publicAddresses entries must be multiaddrs starting with '/' and without /p2p/ (the operator appends the peer id)"
	// +kubebuilder:validation:XValidation:rule="self.all(a, a.matches('^/(ip4|ip6|dns|dns4|dns6)/[^/]+/(tcp|udp)/[0-9]{1,5}(/[^/]+)*$'))",message="publicAddresses entries must start with /ip4, /ip6, /dns, /dns4 or /dns6, then a host, then /tcp/<port> or /udp/<port>"
	Addresses []string `json:"addresses"`
}

// Exposure configures one Service per node carrying TCP and UDP (QUIC) on the same port.
// One Service per node, not one shared load balancer: a multiaddr ends in /p2p/<peer id>
// and only one pod holds that key, so a shared LB would fail the handshake's peer check.
type Exposure struct {
	// Type of the per-node Services. None keeps them ClusterIP (in-cluster peers only).
	// +kubebuilder:default=None
	// +optional
	Type ExposureType `json:"type,omitempty"`

	// Port of the per-node Services (TCP and UDP); the container always listens on 4001.
	// +kubebuilder:default=4001
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// ExternalTrafficPolicy for NodePort/LoadBalancer Services. Local keeps client IPs,
	// which libp2p's per-IP connection limits rely on.
	// +kubebuilder:validation:Enum=Local;Cluster
	// +kubebuilder:default=Local
	// +optional
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy `json:"externalTrafficPolicy,omitempty"`

	// LoadBalancerClass for LoadBalancer Services.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	LoadBalancerClass *string `json:"loadBalancerClass,omitempty"`

	// Annotations added to every per-node Service (cloud LB knobs, IP pinning).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// PublicAddresses overrides address discovery for the listed ordinals.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=ordinal
	// +optional
	PublicAddresses []PublicAddresses `json:"publicAddresses,omitempty"`
}

// Storage is the per-node PersistentVolumeClaim holding the SQLite store. The size may
// grow (the operator expands every node's PVC when the StorageClass allows it; the same
// size in other units is no change); the class is fixed.
// +kubebuilder:validation:XValidation:rule="has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",message="storage.storageClassName is immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.size) || (has(self.size) && quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0)",message="storage.size cannot shrink (volumes can only be expanded)"
// +kubebuilder:validation:XValidation:rule="!has(self.size) || quantity(string(self.size)).compareTo(quantity('64Mi')) >= 0",message="storage.size must be at least 64Mi"
type Storage struct {
	// Size of each node's volume.
	// +kubebuilder:default="1Gi"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// StorageClassName of the volumes; empty uses the cluster default.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// PandaNetworkSpec is the desired state of a PandaNetwork.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.networkID) || self.networkID == oldSelf.networkID",message="networkID is immutable"
type PandaNetworkSpec struct {
	// NetworkID is the p2panda network id: 64 hex characters (raw 32 bytes) or a name
	// that nodes hash with BLAKE3 (docs/node-contract.md). Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^([0-9a-fA-F]{64}|[a-zA-Z0-9][a-zA-Z0-9._-]{0,62})$`
	NetworkID string `json:"networkID"`

	// Replicas is the number of always-on nodes.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image of panda-node; empty uses the operator's --default-node-image.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of the node container.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// BootstrapPeers are external peers every node dials at start: full multiaddrs
	// ending in /p2p/<peer id>.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.startsWith('/') && p.contains('/p2p/'))",message="bootstrapPeers entries must be multiaddrs that contain /p2p/<peer id>"
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^/(ip4|ip6|dns|dns4|dns6|dnsaddr)/[^/]+(/[^/]+)*/p2p/[1-9A-Za-z]{46,128}$'))",message="bootstrapPeers entries must start with /ip4, /ip6, /dns, /dns4, /dns6 or /dnsaddr and end in /p2p/<peer id> (a base58 or CID peer id)"
	// +listType=set
	// +optional
	BootstrapPeers []string `json:"bootstrapPeers,omitempty"`

	// Relay runs a circuit relay v2 service on every node (so NATed edge peers can be reached).
	// +kubebuilder:default=true
	// +optional
	Relay *bool `json:"relay,omitempty"`

	// Exposure of the libp2p port outside the cluster.
	// +kubebuilder:default={}
	// +optional
	Exposure Exposure `json:"exposure,omitempty"`

	// Storage of each node: the size can grow, the class is fixed.
	// +kubebuilder:default={}
	// +optional
	Storage Storage `json:"storage,omitempty"`

	// Resources of the node container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// NodeSelector of the node pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the node pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the node pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// PodAnnotations are added to the node pods (changing them rolls the pods).
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`

	// LogFormat of the nodes.
	// +kubebuilder:validation:Enum=text;json
	// +kubebuilder:default=json
	// +optional
	LogFormat string `json:"logFormat,omitempty"`

	// PodLabels are added to the node pods (changing them rolls the pods). They cannot
	// replace the labels the operator selects pods by.
	// +optional
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// ImagePullSecrets of the node pods.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// ServiceAccountName of the node pods (the nodes never call the Kubernetes API; the
	// token is not mounted).
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// PriorityClassName of the node pods.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// TopologySpreadConstraints of the node pods. Empty spreads pods softly over nodes
	// and zones (ScheduleAnyway).
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// Monitoring configures the PodMonitor the operator creates when prometheus-operator
	// is installed.
	// +kubebuilder:default={}
	// +optional
	Monitoring Monitoring `json:"monitoring,omitempty"`
}

// Monitoring configures the PodMonitor of a network.
type Monitoring struct {
	// PodMonitor is created when true (default) and the PodMonitor CRD is served.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Labels added to the PodMonitor (e.g. to match a Prometheus' podMonitorSelector).
	// Labels other tools set on the PodMonitor are kept.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Interval of the scrapes, e.g. 30s; empty uses Prometheus' default.
	// +kubebuilder:validation:Pattern=`^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`
	// +optional
	Interval string `json:"interval,omitempty"`
}

// NodeStatus is what the operator knows about one node (StatefulSet ordinal).
type NodeStatus struct {
	// Name of the pod (<network>-<ordinal>).
	Name string `json:"name"`
	// Ordinal in the StatefulSet.
	Ordinal int32 `json:"ordinal"`
	// PeerID derived by the operator from the identity Secret (known before the pod runs).
	PeerID string `json:"peerID,omitempty"`
	// Ready mirrors the pod's Ready condition.
	Ready bool `json:"ready"`
	// Addresses are full multiaddrs (with /p2p/<peer id>) under which the node is
	// reachable, each with the kind of address it is.
	// +listType=atomic
	// +optional
	Addresses []NodeAddress `json:"addresses,omitempty"`
}

// AddressType says where an address in the status comes from, and so from where it is
// reachable.
// +kubebuilder:validation:Enum=Static;LoadBalancer;ExternalIP;InternalIP;ClusterDNS
type AddressType string

const (
	// AddressStatic comes from spec.exposure.publicAddresses (the user vouches for it).
	AddressStatic AddressType = "Static"
	// AddressLoadBalancer is the ingress IP or hostname of the node's LoadBalancer Service.
	AddressLoadBalancer AddressType = "LoadBalancer"
	// AddressExternalIP is the ExternalIP of the Kubernetes node (NodePort exposure).
	AddressExternalIP AddressType = "ExternalIP"
	// AddressInternalIP is the InternalIP of the Kubernetes node (NodePort exposure on a
	// node without an ExternalIP): reachable only from networks that route to the nodes.
	AddressInternalIP AddressType = "InternalIP"
	// AddressClusterDNS is the per-node Service's DNS name: reachable only inside the cluster.
	AddressClusterDNS AddressType = "ClusterDNS"
)

// NodeAddress is one multiaddr of a node and the kind of address it is.
type NodeAddress struct {
	// Address is the full multiaddr, ending in /p2p/<peer id>.
	Address string `json:"address"`
	// Type is where the address comes from (and so from where it is reachable).
	Type AddressType `json:"type"`
}

// PandaNetworkStatus is the observed state of a PandaNetwork.
type PandaNetworkStatus struct {
	// Conditions: Ready (summary), Progressing (rollout or scale under way), Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Replicas is the number of pods the StatefulSet has created.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// ReadyReplicas is the number of ready pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Selector is the pod label selector in string form (scale subresource / HPA).
	// +optional
	Selector string `json:"selector,omitempty"`

	// CurrentRevision and UpdateRevision are copied from the StatefulSet; they differ
	// while a rollout is under way.
	// +optional
	CurrentRevision string `json:"currentRevision,omitempty"`
	// +optional
	UpdateRevision string `json:"updateRevision,omitempty"`

	// Nodes, one entry per ordinal.
	// +listType=map
	// +listMapKey=name
	// +optional
	Nodes []NodeStatus `json:"nodes,omitempty"`

	// BootstrapPeers are full multiaddrs (/p2p/<peer id>) edge apps can bootstrap from:
	// public addresses when exposed, in-cluster Service DNS names otherwise. The kind of
	// every entry is in bootstrapPeerTypes (same order) and in nodes[].addresses.
	// +optional
	BootstrapPeers []string `json:"bootstrapPeers,omitempty"`

	// RetainedVolumes are the data PersistentVolumeClaims of ordinals at or above
	// spec.replicas: kept after a scale-down (a later scale-up reuses them); delete them
	// yourself to free the storage.
	// +optional
	RetainedVolumes []string `json:"retainedVolumes,omitempty"`

	// RetainedTopics stay subscribed although no live TopicReplica may list them: a
	// Retain-policy TopicReplica listed them once. The list lives in the Secret
	// <name>-topics-retained, which the network does not own, so it survives deleting and
	// re-creating the network. Topics from a TopicReplica's topicsFrom Secret appear as
	// their fingerprint ("sha256:…"), never as the id. To unsubscribe one, list it in a
	// TopicReplica with reclaimPolicy Delete, then delete that TopicReplica (docs/policy.md).
	// +optional
	RetainedTopics []string `json:"retainedTopics,omitempty"`

	// BootstrapPeerTypes holds the kind of each bootstrapPeers entry, index by index
	// (LoadBalancer, ExternalIP, InternalIP, Static or ClusterDNS).
	// +optional
	BootstrapPeerTypes []AddressType `json:"bootstrapPeerTypes,omitempty"`
}

// PandaNetwork runs the always-on nodes of one p2panda network.
//
// The name becomes the StatefulSet name, whose pods carry the label
// controller-revision-hash=<name>-<10 character hash>: a label value is at most 63
// characters, so a longer name leaves the pods uncreatable. Services are named
// <name>-headless (DNS-1035 labels: start with a letter, at most 63 characters).
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52",message="metadata.name must be at most 52 characters: pods carry the label controller-revision-hash=<name>-<hash>, and label values are limited to 63 characters"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must start with a letter and contain only lowercase letters, digits and '-' (it names Services, which must be DNS-1035 labels)"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=pnet,categories=panda
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.networkID`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PandaNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PandaNetworkSpec   `json:"spec"`
	Status PandaNetworkStatus `json:"status,omitempty"`
}

// PandaNetworkList contains a list of PandaNetwork.
// +kubebuilder:object:root=true
type PandaNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PandaNetwork `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PandaNetwork{}, &PandaNetworkList{})
}
