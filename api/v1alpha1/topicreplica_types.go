package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReclaimPolicy says what happens to a topic subscription when its TopicReplica goes.
// +kubebuilder:validation:Enum=Retain;Delete
type ReclaimPolicy string

const (
	// ReclaimRetain keeps the topic subscribed after the TopicReplica is deleted
	// (like a PersistentVolume with Retain, the subscription outlives its claim).
	ReclaimRetain ReclaimPolicy = "Retain"
	// ReclaimDelete unsubscribes the topic when the TopicReplica is deleted. Nodes keep
	// the data they already stored either way; only syncing stops.
	ReclaimDelete ReclaimPolicy = "Delete"
)

// Reasons of TopicReplica conditions.
const (
	ReasonNetworkNotFound = "NetworkNotFound"
	ReasonProgressing     = "Progressing"
	// ReasonAllNodesSynced: every node holds every topic, none lacking more than
	// TopicSyncLagBound operations of the most complete node (it was "AllNodesSubscribed"
	// while Ready meant only "listed by every node").
	ReasonAllNodesSynced = "AllNodesSynced"
	// ReasonNoNodes: the network is scaled to zero, so no node holds the topics.
	ReasonNoNodes = "NoNodes"
	// ReasonTopicsSecretNotFound: the topicsFrom Secret or its key does not exist.
	ReasonTopicsSecretNotFound = "TopicsSecretNotFound"
	// ReasonInvalidTopicsSecret: the topicsFrom Secret's file does not parse.
	ReasonInvalidTopicsSecret = "InvalidTopicsSecret"

	// ConditionQuotaNearlyFull is True while a node stores at least 90% of a quota of the
	// replica's topics; a Warning event of the same reason is recorded when it turns True.
	ConditionQuotaNearlyFull = "QuotaNearlyFull"
	ReasonQuotaNearlyFull    = "QuotaNearlyFull"
	ReasonQuotaOK            = "BelowQuota"
)

// NetworkReference names a PandaNetwork in the same namespace.
type NetworkReference struct {
	// Name of the PandaNetwork.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// SecretKeyReference names one key of a Secret in the TopicReplica's namespace.
type SecretKeyReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// TopicsSource is where a TopicReplica reads further topics from.
type TopicsSource struct {
	// SecretKeyRef is a key of a Secret in the TopicReplica's namespace holding a topics
	// file: one topic per line (64 hex characters or a name), optionally followed by a
	// write policy in brackets, as the node's --topics-file (docs/policy.md). Topic ids are
	// read capabilities: kept in a Secret they never appear in a ConfigMap, in the
	// TopicReplica or in its status (which shows a fingerprint instead).
	SecretKeyRef SecretKeyReference `json:"secretKeyRef"`
}

// TopicReplicaSpec is the desired state of a TopicReplica. Topics come from spec.topics,
// from spec.topicsFrom, or from both (their union).
// +kubebuilder:validation:XValidation:rule="has(self.topics) || has(self.topicsFrom)",message="set topics, topicsFrom or both"
type TopicReplicaSpec struct {
	// NetworkRef is the PandaNetwork whose nodes subscribe to the topics. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="networkRef is immutable"
	NetworkRef NetworkReference `json:"networkRef"`

	// Topics to subscribe, sync and persist: 64 hex characters or a name (hashed with BLAKE3).
	// Anyone who can read this object learns them; keep topics that are read capabilities
	// in a Secret and use topicsFrom.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^([0-9a-fA-F]{64}|[a-zA-Z0-9][a-zA-Z0-9._-]{0,62})$`
	// +listType=set
	// +optional
	Topics []string `json:"topics,omitempty"`

	// TopicsFrom adds the topics of a topics file kept in a Secret. A line's own [policy]
	// applies to that topic; lines without one get this TopicReplica's writers, quota and
	// retention. The operator re-reads the Secret at every status poll (30 s): an edit reaches
	// the nodes within one poll. When the Secret or key is missing or the file is invalid,
	// Ready turns False with reason TopicsSecretNotFound or InvalidTopicsSecret and the nodes
	// keep the topics last read from it.
	// +optional
	TopicsFrom *TopicsSource `json:"topicsFrom,omitempty"`

	// ReclaimPolicy: Retain keeps the topics subscribed after this object is deleted;
	// Delete unsubscribes them (the node keeps data it already has).
	// +kubebuilder:default=Retain
	// +optional
	ReclaimPolicy ReclaimPolicy `json:"reclaimPolicy,omitempty"`

	// Writers are the author public keys (64 lowercase hex characters) allowed to write to
	// these topics on the network's nodes; empty lets anyone write. Operations of other
	// authors are refused and never reach other peers through the nodes.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[0-9a-f]{64}$'))",message="writers must be public keys of 64 lowercase hex characters"
	// +listType=set
	// +optional
	Writers []string `json:"writers,omitempty"`

	// Quota bounds what the nodes store per author and per topic; beyond it they refuse.
	// +optional
	Quota *TopicQuota `json:"quota,omitempty"`

	// Retention bounds what the nodes keep per topic: the least recently written logs are
	// dropped whole once a topic is older or larger.
	// +optional
	Retention *TopicRetention `json:"retention,omitempty"`
}

// TopicLimit bounds stored operations and their bytes (header plus body). At least one is
// set; both are positive.
// +kubebuilder:validation:XValidation:rule="has(self.operations) || has(self.bytes)",message="set operations, bytes or both"
// +kubebuilder:validation:XValidation:rule="!has(self.bytes) || quantity(self.bytes).isGreaterThan(quantity('0'))",message="bytes must be positive"
type TopicLimit struct {
	// Operations stored at most.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Operations *int64 `json:"operations,omitempty"`
	// Bytes stored at most, e.g. 64Mi.
	// +optional
	Bytes *resource.Quantity `json:"bytes,omitempty"`
}

// TopicQuota bounds what one author, and the topic as a whole, may store on each node.
// +kubebuilder:validation:XValidation:rule="has(self.perAuthor) || has(self.perTopic)",message="set perAuthor, perTopic or both"
type TopicQuota struct {
	// PerAuthor applies to each author's operations in a topic.
	// +optional
	PerAuthor *TopicLimit `json:"perAuthor,omitempty"`
	// PerTopic applies to all operations of a topic together.
	// +optional
	PerTopic *TopicLimit `json:"perTopic,omitempty"`
}

// TopicRetention bounds what each node keeps of a topic. At least one is set; both are
// positive.
// +kubebuilder:validation:XValidation:rule="has(self.maxAge) || has(self.maxBytes)",message="set maxAge, maxBytes or both"
// +kubebuilder:validation:XValidation:rule="!has(self.maxAge) || duration(self.maxAge) > duration('0s')",message="maxAge must be positive"
// +kubebuilder:validation:XValidation:rule="!has(self.maxBytes) || quantity(self.maxBytes).isGreaterThan(quantity('0'))",message="maxBytes must be positive"
type TopicRetention struct {
	// MaxAge drops a log once its newest operation is older, e.g. 720h.
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
	// MaxBytes drops the least recently written logs while a topic stores more, e.g. 10Gi.
	// +optional
	MaxBytes *resource.Quantity `json:"maxBytes,omitempty"`
}

// TopicNodeStatus is one node's view of one topic.
type TopicNodeStatus struct {
	// Node is the pod name.
	Node string `json:"node"`
	// Operations the node holds for the topic.
	Operations int64 `json:"operations"`
	// Bytes the node stores for the topic (header plus body), reported when the topic has
	// a write policy.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// Refused counts operations the node refused by the topic's policy since it started,
	// by reason (not_writer, over_quota, retention); absent when it refused none.
	// +optional
	Refused map[string]int64 `json:"refused,omitempty"`
	// Behind is how many operations of the topic this node lacks compared with the nodes
	// that hold most of each author's log (the sum, over the logs, of the highest height
	// any node reports minus this node's); absent when the node is in sync.
	// +optional
	Behind int64 `json:"behind,omitempty"`
}

// TopicSyncLagBound is the most operations a node may lack of a topic (TopicNodeStatus.Behind)
// and still count as synced for Ready: the nodes are polled one after another while
// operations keep arriving, so equal heights are not required at every instant.
const TopicSyncLagBound = 100

// TopicStatus lists the nodes that hold a topic.
type TopicStatus struct {
	// Topic as written in spec.topics; for a topic from topicsFrom, "secret:<name>/<key>".
	Topic string `json:"topic"`
	// ID is the canonical lowercase-hex topic id nodes report; for a topic from topicsFrom,
	// which must stay secret, its fingerprint "sha256:" + the first 16 hex characters of
	// SHA-256 over the 32-byte id (whoever holds the id can compute it, nobody can reverse it).
	ID string `json:"id"`
	// Nodes that report the topic.
	// +optional
	Nodes []TopicNodeStatus `json:"nodes,omitempty"`
}

// TopicReplicaStatus is the observed state of a TopicReplica.
type TopicReplicaStatus struct {
	// Conditions: Ready (reasons NetworkNotFound, NoNodes, Progressing, AllNodesSynced,
	// TopicsSecretNotFound, InvalidTopicsSecret): True when every node holds every topic in
	// sync (none lacks more than TopicSyncLagBound operations of the most complete node);
	// QuotaNearlyFull.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Topics with the nodes that hold them, read from each node's admin API.
	// +optional
	Topics []TopicStatus `json:"topics,omitempty"`
}

// TopicReplica asks the nodes of a PandaNetwork to subscribe to, sync and persist topics.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ptr,categories=panda
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.networkRef.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TopicReplica struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TopicReplicaSpec   `json:"spec"`
	Status TopicReplicaStatus `json:"status,omitempty"`
}

// TopicReplicaList contains a list of TopicReplica.
// +kubebuilder:object:root=true
type TopicReplicaList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TopicReplica `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TopicReplica{}, &TopicReplicaList{})
}
