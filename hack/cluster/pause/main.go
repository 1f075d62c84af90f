// Command pause is the pod sandbox ("infra") container of the test cluster that
// hack/cluster/cluster.sh starts: it holds the pod's namespaces open and does nothing else.
// The public pause image cannot be pulled on air-gapped machines, so the cluster script builds
// this static program into a FROM-scratch image and gives it to containerd as sandbox_image.
//
// As PID 1 of its PID namespace it gets no default signal handlers, so it must exit on
// SIGTERM/SIGINT itself or every pod stop would wait for the kubelet's SIGKILL.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
