// Package v1alpha1 contains the pandanet.io/v1alpha1 API: PandaNetwork (a StatefulSet of
// always-on panda-node peers of one p2panda network) and TopicReplica (topics those peers
// subscribe to, sync and persist).
//
// +kubebuilder:object:generate=true
// +groupName=pandanet.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "pandanet.io", Version: "v1alpha1"}

	// SchemeBuilder is used to add go types to the GroupVersionKind scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
