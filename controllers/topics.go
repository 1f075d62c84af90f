package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	pandav1 "github.com/pandanet/pandanet/api/v1alpha1"
	"github.com/pandanet/pandanet/internal/config"
)

// Topic ids are read capabilities: whoever knows one can read the topic. So the network's
// topics file lives in a Secret (<name>-topics, mounted into the pods), a TopicReplica may
// take its topics from a Secret (spec.topicsFrom.secretKeyRef), and topics that came from a
// Secret appear in statuses, conditions and events only as a fingerprint.
//
// User Secrets carry no operator label, so the label-filtered cache never sees them, and
// caching or watching Secrets would need list/watch on every Secret in scope. The operator
// therefore reads a topicsFrom Secret with the uncached API reader (get only) on every
// TopicReplica reconcile, which runs at least once per status poll: an edit reaches the
// nodes within one poll interval.

// ReplicaTopic is one topic of a TopicReplica, from spec.topics or from its topicsFrom
// Secret.
type ReplicaTopic struct {
	// Name as written in spec.topics; a topic from the Secret is written as its hex id.
	Name string
	// ID is the canonical lowercase-hex topic id.
	ID string
	// Policy is the Secret line's own policy ("" for none: the replica's applies).
	Policy string
	// Secret marks a topic from topicsFrom: its id never appears in a status or event.
	Secret bool
}

// Display is how the topic appears in statuses and conditions.
func (t ReplicaTopic) Display(tr *pandav1.TopicReplica) (topic, id string) {
	if !t.Secret {
		return t.Name, t.ID
	}
	ref := tr.Spec.TopicsFrom.SecretKeyRef
	return "secret:" + ref.Name + "/" + ref.Key, TopicFingerprint(t.ID)
}

// TopicFingerprint names a secret topic without revealing it: "sha256:" and the first 16
// hex characters of SHA-256 over the 32-byte id. Whoever holds the id can compute it.
func TopicFingerprint(hexID string) string {
	b, err := hex.DecodeString(hexID)
	if err != nil {
		b = []byte(hexID)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// TopicsSourceError says why a topicsFrom Secret could not be used; Reason is the Ready
// condition's reason.
type TopicsSourceError struct {
	Reason  string
	Message string
}

func (e *TopicsSourceError) Error() string { return e.Message }

// ResolvedReplica is a TopicReplica with its topics resolved.
type ResolvedReplica struct {
	Replica *pandav1.TopicReplica
	// Topics: spec.topics, then the Secret's topics (fresh, or last read when the Secret
	// cannot be used now).
	Topics []ReplicaTopic
	// SourceErr is why topicsFrom could not be read now (nil when it was or is unset).
	SourceErr *TopicsSourceError
	// fromSecret are the Secret's topics as used, rendered for the topics Secret's
	// from.<name> key (nil: none known).
	fromSecret []ReplicaTopic
}

// specTopics are the replica's spec.topics.
func specTopics(tr *pandav1.TopicReplica) []ReplicaTopic {
	out := make([]ReplicaTopic, 0, len(tr.Spec.Topics))
	for _, t := range tr.Spec.Topics {
		out = append(out, ReplicaTopic{Name: t, ID: canonicalID(t)})
	}
	return out
}

// ParseSecretTopics parses a topics file from a Secret with the node's own parser (so
// nothing the nodes would reject is ever written) into secret topics.
func ParseSecretTopics(data string) ([]ReplicaTopic, error) {
	if _, err := config.ParseTopics(strings.NewReader(data)); err != nil {
		return nil, err
	}
	var out []ReplicaTopic
	seen := map[string]bool{}
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parsed, err := config.ParseTopics(strings.NewReader(line))
		if err != nil || len(parsed) != 1 {
			return nil, fmt.Errorf("topic %q: %v", line, err)
		}
		id := hex.EncodeToString(parsed[0].Topic[:])
		if seen[id] {
			continue
		}
		seen[id] = true
		rt := ReplicaTopic{Name: id, ID: id, Secret: true}
		if !parsed[0].Policy.IsZero() {
			i := strings.LastIndex(line, " [")
			rt.Policy = strings.Join(strings.Fields(line[i+2:len(line)-1]), " ")
		}
		out = append(out, rt)
	}
	return out, nil
}

// renderSecretTopics is the from.<name> bookkeeping form: one "id [policy]" per line.
func renderSecretTopics(ts []ReplicaTopic) []byte {
	var b strings.Builder
	for _, t := range ts {
		b.WriteString(t.ID)
		if t.Policy != "" {
			b.WriteString(" [" + t.Policy + "]")
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// readTopicsFrom reads and parses the replica's topicsFrom Secret. A missing Secret or key
// and an invalid file are a *TopicsSourceError; other API errors are returned as such.
func readTopicsFrom(ctx context.Context, reader client.Reader, tr *pandav1.TopicReplica) ([]ReplicaTopic, error) {
	ref := tr.Spec.TopicsFrom.SecretKeyRef
	sec := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: tr.Namespace, Name: ref.Name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &TopicsSourceError{Reason: pandav1.ReasonTopicsSecretNotFound,
				Message: fmt.Sprintf("topicsFrom: Secret %q not found in namespace %s", ref.Name, tr.Namespace)}
		}
		return nil, fmt.Errorf("get topicsFrom secret %s/%s: %w", tr.Namespace, ref.Name, err)
	}
	data, ok := sec.Data[ref.Key]
	if !ok {
		return nil, &TopicsSourceError{Reason: pandav1.ReasonTopicsSecretNotFound,
			Message: fmt.Sprintf("topicsFrom: Secret %q has no key %q", ref.Name, ref.Key)}
	}
	if len(data) > config.MaxTopicsFileSize {
		return nil, &TopicsSourceError{Reason: pandav1.ReasonInvalidTopicsSecret,
			Message: fmt.Sprintf("topicsFrom: Secret %q key %q is larger than %d bytes", ref.Name, ref.Key, config.MaxTopicsFileSize)}
	}
	ts, err := ParseSecretTopics(string(data))
	if err != nil {
		// The parser's messages name a line number, never echo a topic id.
		return nil, &TopicsSourceError{Reason: pandav1.ReasonInvalidTopicsSecret,
			Message: fmt.Sprintf("topicsFrom: Secret %q key %q is not a valid topics file: %s", ref.Name, ref.Key, redactTopicError(err))}
	}
	if len(ts)+len(tr.Spec.Topics) == 0 {
		return nil, &TopicsSourceError{Reason: pandav1.ReasonInvalidTopicsSecret,
			Message: fmt.Sprintf("topicsFrom: Secret %q key %q lists no topic", ref.Name, ref.Key)}
	}
	return ts, nil
}

// redactTopicError keeps a parse error's line number and drops quoted text, which may be
// (part of) a topic.
func redactTopicError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i > 0 && strings.HasPrefix(msg, "line ") {
		rest := msg[i+2:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			rest = rest[:j] + "…"
		}
		return msg[:i] + ": " + rest
	}
	if strings.ContainsRune(msg, '"') {
		return "malformed line"
	}
	return msg
}

// resolveReplica resolves one replica. last are the topics last read from its Secret (the
// topics Secret's from.<name> key), used when the Secret cannot be read now, so a Secret
// deleted by mistake unsubscribes nothing.
func resolveReplica(ctx context.Context, reader client.Reader, tr *pandav1.TopicReplica, last []byte) (ResolvedReplica, error) {
	rr := ResolvedReplica{Replica: tr, Topics: specTopics(tr)}
	if tr.Spec.TopicsFrom == nil {
		return rr, nil
	}
	fresh, err := readTopicsFrom(ctx, reader, tr)
	var se *TopicsSourceError
	switch {
	case err == nil:
		rr.fromSecret = fresh
	case errors.As(err, &se):
		rr.SourceErr = se
		if last != nil {
			// Our own rendering: it parsed when it was written.
			rr.fromSecret, _ = ParseSecretTopics(string(last))
		}
	default:
		return rr, err
	}
	rr.Topics = append(rr.Topics, rr.fromSecret...)
	return rr, nil
}

// TopicSet is the result of merging the TopicReplicas of one network.
type TopicSet struct {
	// Topics is the sorted union written to the topics file.
	Topics []string
	// Retained are topics kept subscribed because a Retain-policy TopicReplica listed them
	// in spec.topics at some point; RetainedSecret those that came from topicsFrom Secrets
	// (hex ids). Both are remembered in the retained Secret, which outlives the network.
	Retained       []string
	RetainedSecret []string
	// Lines are the topics file's lines: Topics, in order, each followed by its write
	// policy ("topic [writers=… author-ops=…]") when a live TopicReplica sets one.
	Lines []string
}

// RetainedStatus is status.retainedTopics: retained spec topics as written, secret ones as
// fingerprints, sorted.
func (s TopicSet) RetainedStatus() []string {
	out := append([]string(nil), s.Retained...)
	for _, id := range s.RetainedSecret {
		out = append(out, TopicFingerprint(id))
	}
	sort.Strings(out)
	return out
}

// MergeTopics merges replicas that only use spec.topics (see MergeResolved).
func MergeTopics(replicas []pandav1.TopicReplica, previousRetained []string) TopicSet {
	rs := make([]ResolvedReplica, 0, len(replicas))
	for i := range replicas {
		rs = append(rs, ResolvedReplica{Replica: &replicas[i], Topics: specTopics(&replicas[i])})
	}
	return MergeResolved(rs, previousRetained, nil)
}

// MergeResolved computes the topics file of a network. Live (not terminating) replicas
// contribute their topics. Retain-policy topics are remembered (previousRetained as
// written, previousSecret as hex ids from topicsFrom Secrets) and stay subscribed after
// their TopicReplica goes; a topic leaves the retained set only when a Delete-policy
// TopicReplica claims it, so switching a replica to Delete and deleting it is how a
// retained topic is unsubscribed.
func MergeResolved(replicas []ResolvedReplica, previousRetained, previousSecret []string) TopicSet {
	// Keyed by the canonical id (lower-case hex of the 32 bytes): "ABC…" and "abc…", or a
	// name and its own BLAKE3 hash, are one topic and must appear once in the file. A
	// spelling from spec.topics (public anyway) wins over the hex id from a Secret.
	type entry struct {
		name   string
		secret bool
	}
	want := map[string]entry{}
	retained := map[string]entry{}
	add := func(m map[string]entry, id string, e entry) {
		cur, ok := m[id]
		if !ok || (cur.secret && !e.secret) || (cur.secret == e.secret && e.name < cur.name) {
			m[id] = e
		}
	}
	for _, t := range previousRetained {
		add(retained, canonicalID(t), entry{name: t})
	}
	for _, t := range previousSecret {
		add(retained, canonicalID(t), entry{name: canonicalID(t), secret: true})
	}
	for _, rr := range replicas {
		if rr.Replica.Spec.ReclaimPolicy == pandav1.ReclaimDelete {
			for _, t := range rr.Topics {
				delete(retained, t.ID)
			}
		}
	}
	for _, rr := range replicas {
		live := rr.Replica.DeletionTimestamp.IsZero()
		for _, t := range rr.Topics {
			e := entry{name: t.Name, secret: t.Secret}
			if live {
				add(want, t.ID, e)
			}
			if rr.Replica.Spec.ReclaimPolicy != pandav1.ReclaimDelete {
				add(retained, t.ID, e)
			}
		}
	}
	for id, e := range retained {
		add(want, id, e)
	}
	set := TopicSet{}
	for _, e := range want {
		set.Topics = append(set.Topics, e.name)
	}
	sort.Strings(set.Topics)
	for _, e := range retained {
		if e.secret {
			set.RetainedSecret = append(set.RetainedSecret, e.name)
		} else {
			set.Retained = append(set.Retained, e.name)
		}
	}
	sort.Strings(set.Retained)
	sort.Strings(set.RetainedSecret)
	policies := topicPolicies(replicas)
	for _, t := range set.Topics {
		if p := policies[canonicalID(t)]; p != "" {
			t += " [" + p + "]"
		}
		set.Lines = append(set.Lines, t)
	}
	return set
}

// topicPolicies renders the write policy of every topic that a live TopicReplica gives
// one, keyed by the topic's canonical id: a Secret line's own policy, else the replica's
// writers, quota and retention. When several replicas give a topic a policy, the oldest
// replica's (creation time, then name) applies.
func topicPolicies(replicas []ResolvedReplica) map[string]string {
	order := make([]ResolvedReplica, 0, len(replicas))
	for _, rr := range replicas {
		if rr.Replica.DeletionTimestamp.IsZero() {
			order = append(order, rr)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		ti, tj := order[i].Replica.CreationTimestamp, order[j].Replica.CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return order[i].Replica.Name < order[j].Replica.Name
	})
	out := map[string]string{}
	for _, rr := range order {
		spec := RenderTopicPolicy(&rr.Replica.Spec)
		for _, t := range rr.Topics {
			p := t.Policy
			if p == "" {
				p = spec
			}
			if _, ok := out[t.ID]; !ok && p != "" {
				out[t.ID] = p
			}
		}
	}
	return out
}

// BuildTopicsSecret is the network's topics Secret: the topics file the pods mount (key
// topics) and, per TopicReplica with topicsFrom, the topics last read from its Secret
// (key from.<name>, not mounted). A Secret, not a ConfigMap: a topic id is a read
// capability, and whoever may read ConfigMaps in the namespace must not learn it.
func BuildTopicsSecret(pn *pandav1.PandaNetwork, set TopicSet, replicas []ResolvedReplica) *corev1.Secret {
	data := map[string][]byte{TopicsKey: []byte(RenderTopicsFile(set.Lines))}
	for _, rr := range replicas {
		if rr.Replica.Spec.TopicsFrom != nil && rr.fromSecret != nil {
			data[fromKey(rr.Replica.Name)] = renderSecretTopics(rr.fromSecret)
		}
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: topicsSecretName(pn), Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
}

// BuildRetainedSecret holds the retained topics. It has no owner: deleting and
// re-creating the network (same name) keeps them, like the identity Secret keeps peer ids.
func BuildRetainedSecret(pn *pandav1.PandaNetwork, set TopicSet) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: retainedSecretName(pn), Namespace: pn.Namespace, Labels: commonLabels(pn)},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			RetainedKey:       []byte(RenderTopicsFile(set.Retained)),
			RetainedSecretKey: []byte(RenderTopicsFile(set.RetainedSecret)),
		},
	}
}

// resolveAll resolves every replica of the network; last holds the topics Secret's data.
func resolveAll(ctx context.Context, reader client.Reader, trs []pandav1.TopicReplica, last map[string][]byte) ([]ResolvedReplica, error) {
	out := make([]ResolvedReplica, 0, len(trs))
	for i := range trs {
		rr, err := resolveReplica(ctx, reader, &trs[i], last[fromKey(trs[i].Name)])
		if err != nil {
			return nil, err
		}
		out = append(out, rr)
	}
	return out, nil
}

// reconcileTopics writes the retained Secret and the topics Secret and returns
// status.retainedTopics. Nothing is written unless the merged file parses with the node's
// parser. The retained Secret is written first, so a failure between the two writes never
// forgets a retained topic.
func (r *PandaNetworkReconciler) reconcileTopics(ctx context.Context, pn *pandav1.PandaNetwork) ([]string, error) {
	trs, err := listTopicReplicas(ctx, r.Client, pn.Namespace, pn.Name)
	if err != nil {
		return nil, err
	}
	current, err := r.getOwnSecret(ctx, pn, topicsSecretName(pn))
	if err != nil {
		return nil, err
	}
	kept, err := r.getOwnSecret(ctx, pn, retainedSecretName(pn))
	if err != nil {
		return nil, err
	}
	var prevRetained, prevSecret []string
	var last map[string][]byte
	if current != nil {
		last = current.Data
	}
	if kept != nil {
		prevRetained = ParseTopicsFile(string(kept.Data[RetainedKey]))
		prevSecret = ParseTopicsFile(string(kept.Data[RetainedSecretKey]))
	}
	// Migration: the retained list of operators that kept topics in a ConfigMap.
	legacy := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: legacyTopicsConfigMapName(pn)}, legacy); err == nil {
		if metav1.IsControlledBy(legacy, pn) {
			prevRetained = append(prevRetained, ParseTopicsFile(legacy.Data[RetainedKey])...)
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get legacy topics configmap %s: %w", legacyTopicsConfigMapName(pn), err)
	}
	resolved, err := resolveAll(ctx, r.APIReader, trs, last)
	if err != nil {
		return nil, err
	}
	set := MergeResolved(resolved, prevRetained, prevSecret)
	file := RenderTopicsFile(set.Lines)
	if _, err := config.ParseTopics(strings.NewReader(file)); err != nil {
		return nil, fmt.Errorf("merged topics file of %s does not parse, not written: %s", pn.Name, redactTopicError(err))
	}
	if err := r.writeSecret(ctx, pn, kept, BuildRetainedSecret(pn, set), false); err != nil {
		return nil, err
	}
	if err := r.writeSecret(ctx, pn, current, BuildTopicsSecret(pn, set, resolved), true); err != nil {
		return nil, err
	}
	return set.RetainedStatus(), nil
}

// getOwnSecret reads a Secret the operator creates for the network (uncached); nil when it
// does not exist. One that exists without the operator's labels is refused (AdoptionError):
// e.g. a user Secret with topic ids that happens to be called <network>-topics is never
// overwritten.
func (r *PandaNetworkReconciler) getOwnSecret(ctx context.Context, pn *pandav1.PandaNetwork, name string) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get secret %s: %w", name, err)
	}
	if err := checkAdoptable(pn, sec); err != nil {
		return nil, err
	}
	return sec, nil
}

// writeSecret creates desired or updates live (read just before) when its data, labels or
// owner differ. owned adds the network as controller owner.
func (r *PandaNetworkReconciler) writeSecret(ctx context.Context, pn *pandav1.PandaNetwork, live, desired *corev1.Secret, owned bool) error {
	if live == nil {
		if owned {
			if err := setOwner(pn, desired, r); err != nil {
				return err
			}
		}
		if err := r.Create(ctx, desired); err != nil {
			return fmt.Errorf("create secret %s: %w", desired.Name, err)
		}
		return nil
	}
	changed := !equalSecretData(live.Data, desired.Data)
	for k, v := range desired.Labels {
		if live.Labels[k] != v {
			changed = true
		}
	}
	if owned && !metav1.IsControlledBy(live, pn) {
		changed = true
	}
	if !changed {
		return nil
	}
	next := live.DeepCopy()
	mergeLabels(&next.ObjectMeta, desired.Labels)
	next.Data = desired.Data
	next.StringData = nil
	if owned {
		if err := setOwner(pn, next, r); err != nil {
			return err
		}
	}
	// Update carries resourceVersion: a concurrent writer makes this fail and retry.
	if err := r.Update(ctx, next); err != nil {
		return fmt.Errorf("update secret %s: %w", desired.Name, err)
	}
	return nil
}

func equalSecretData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

func setOwner(pn *pandav1.PandaNetwork, obj client.Object, r *PandaNetworkReconciler) error {
	if err := controllerutil.SetControllerReference(pn, obj, r.Scheme); err != nil {
		return fmt.Errorf("own %s: %w", obj.GetName(), err)
	}
	return nil
}

// removeLegacyTopicsConfigMap deletes the topics ConfigMap earlier operator versions wrote
// (topic ids in a ConfigMap are readable by anyone who may read ConfigMaps), once nothing
// can still mount it: the StatefulSet's template mounts the topics Secret and every pod
// runs that template. Its retained list was merged into the retained Secret before (see
// reconcileTopics). Only a ConfigMap owned by this network is touched.
func (r *PandaNetworkReconciler) removeLegacyTopicsConfigMap(ctx context.Context, pn *pandav1.PandaNetwork, sts *appsv1.StatefulSet) error {
	if sts == nil {
		return nil
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == legacyTopicsConfigMapName(pn) {
			return nil
		}
	}
	st := sts.Status
	if st.ObservedGeneration < sts.Generation || st.CurrentRevision != st.UpdateRevision || st.UpdatedReplicas != st.Replicas {
		return nil // pods of the previous template may still mount it
	}
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pn.Namespace, Name: legacyTopicsConfigMapName(pn)}, cm); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(cm, pn) {
		return nil
	}
	if err := r.Delete(ctx, cm, client.Preconditions{UID: &cm.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete legacy topics configmap %s: %w", cm.Name, err)
	}
	r.event(pn, corev1.EventTypeNormal, "TopicsMigrated", "Delete",
		"deleted ConfigMap %s: the topics file now lives in Secret %s (topic ids are read capabilities)", cm.Name, topicsSecretName(pn))
	return nil
}

// fromKey is the topics Secret key holding what a replica's topicsFrom Secret gave last;
// names too long for a Secret key (253) are hashed.
func fromKey(replica string) string {
	if k := fromKeyPrefix + replica; len(k) <= 253 {
		return k
	}
	sum := sha256.Sum256([]byte(replica))
	return fromKeyPrefix + hex.EncodeToString(sum[:])
}
