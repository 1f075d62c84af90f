// Package controllers holds the PandaNetwork and TopicReplica reconcilers and the pure
// builders of every object they manage. Builders take the PandaNetwork (plus looked-up
// facts such as peer ids) and return desired objects, so they are unit-tested without an
// API server; reconcilers only fetch, compare and write.
package controllers

import (
	"fmt"
	"strconv"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
)

// Well-known paths and ports from docs/node-contract.md.
const (
	DataDir     = "/var/lib/panda"
	IdentityDir = "/etc/panda/identity"
	TopicsDir   = "/etc/panda/topics"
	AdminDir    = "/etc/panda/admin"
	ConfigDir   = "/etc/panda/config"
	P2PPort     = 4001
	MetricsPort = 9464
	AdminPort   = 7070
	TopicsKey   = "topics"
	RetainedKey = "retained"
	// RetainedSecretKey lists retained topics that came from topicsFrom Secrets (hex ids).
	RetainedSecretKey = "retained-from-secrets"
	// fromKeyPrefix + a TopicReplica's name: the topics last read from its topicsFrom Secret.
	fromKeyPrefix = "from."
	AdminTokenKey = "token"
	nodeContainer = "panda-node"
	dataVolume    = "data"
	nodeUID       = int64(65532)
	ordinalLabel  = "pandanet.io/ordinal"
	networkLabel  = "pandanet.io/network"
)

// Object names derived from the PandaNetwork name.
func statefulSetName(pn *pandav1.PandaNetwork) string     { return pn.Name }
func headlessServiceName(pn *pandav1.PandaNetwork) string { return pn.Name + "-headless" }
func identitySecretName(pn *pandav1.PandaNetwork) string  { return pn.Name + "-identity" }
func adminSecretName(pn *pandav1.PandaNetwork) string     { return pn.Name + "-admin-token" }
func topicsSecretName(pn *pandav1.PandaNetwork) string    { return pn.Name + "-topics" }
func configConfigMapName(pn *pandav1.PandaNetwork) string { return pn.Name + "-config" }
func pdbName(pn *pandav1.PandaNetwork) string             { return pn.Name }

// retainedSecretName holds the retained topics. Not "<name>-retained-topics": that is the
// topics Secret of a network called "<name>-retained".
func retainedSecretName(pn *pandav1.PandaNetwork) string { return pn.Name + "-topics-retained" }

// legacyTopicsConfigMapName is where earlier operator versions kept the topics file (a
// ConfigMap); it is migrated and deleted (see removeLegacyTopicsConfigMap).
func legacyTopicsConfigMapName(pn *pandav1.PandaNetwork) string { return pn.Name + "-topics" }

// nodeName is both the pod name and its per-node Service name.
func nodeName(pn *pandav1.PandaNetwork, ordinal int32) string {
	return fmt.Sprintf("%s-%d", pn.Name, ordinal)
}

func keyFileKey(pn *pandav1.PandaNetwork, ordinal int32) string {
	return nodeName(pn, ordinal) + ".key"
}
func peerIDKey(pn *pandav1.PandaNetwork, ordinal int32) string {
	return nodeName(pn, ordinal) + ".peerid"
}
func configFileKey(pn *pandav1.PandaNetwork, ordinal int32) string {
	return nodeName(pn, ordinal) + ".yaml"
}

// selectorLabels select the pods of one network. They are immutable in the StatefulSet,
// so keep them minimal and never derive them from user input other than the name.
func selectorLabels(pn *pandav1.PandaNetwork) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":     "panda-node",
		"app.kubernetes.io/instance": pn.Name,
	}
}

// commonLabels go on every object the operator creates for a network.
func commonLabels(pn *pandav1.PandaNetwork) map[string]string {
	l := selectorLabels(pn)
	l["app.kubernetes.io/managed-by"] = "panda-operator"
	l["app.kubernetes.io/component"] = "node"
	l[networkLabel] = pn.Name
	return l
}

func nodeServiceLabels(pn *pandav1.PandaNetwork, ordinal int32) map[string]string {
	l := commonLabels(pn)
	l[ordinalLabel] = strconv.Itoa(int(ordinal))
	return l
}

// desiredReplicas is spec.replicas with the CRD default applied for objects that were
// never defaulted by the API server (unit tests, older stored versions).
func desiredReplicas(pn *pandav1.PandaNetwork) int32 {
	if pn.Spec.Replicas == nil {
		return 3
	}
	return *pn.Spec.Replicas
}

func relayEnabled(pn *pandav1.PandaNetwork) bool {
	return pn.Spec.Relay == nil || *pn.Spec.Relay
}

func exposureType(pn *pandav1.PandaNetwork) pandav1.ExposureType {
	if pn.Spec.Exposure.Type == "" {
		return pandav1.ExposureNone
	}
	return pn.Spec.Exposure.Type
}

func exposurePort(pn *pandav1.PandaNetwork) int32 {
	if pn.Spec.Exposure.Port == 0 {
		return P2PPort
	}
	return pn.Spec.Exposure.Port
}

func logFormat(pn *pandav1.PandaNetwork) string {
	if pn.Spec.LogFormat == "" {
		return "json"
	}
	return pn.Spec.LogFormat
}
