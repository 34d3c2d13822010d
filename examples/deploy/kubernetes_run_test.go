package deploy

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// startProcess runs one of the binaries until the test ends (SIGTERM,
// then a bounded wait) and collects its output.
func startProcess(t *testing.T, binary string, args []string) *lockedBuffer {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(built(t), binary), args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s", binary, strings.Join(args, " "))
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop within 20 s of SIGTERM", binary)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", binary, out.String())
		}
	})
	return out
}

// httpStatus returns the status code of a GET on loopback, or 0.
func httpStatus(url string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// The DaemonSet's edge, the backend Deployment and the collector, run as
// processes with their manifests' command lines, ConfigMaps and templates
// (the cluster's names and ports mapped to loopback, examples/tftproot
// standing for the content volume): /readyz turns 200 with the backend
// reachable, the backend's iPXE template reaches a client through the
// edge naming the client's address, and the collector receives the
// session.
func TestKubernetesWorkloadsServeTogetherOnLoopback(t *testing.T) {
	m, err := loadManifests(t, manifestSets(t)["hostNetwork DaemonSet"]...)
	if err != nil {
		t.Fatal(err)
	}
	containers := map[string]corev1.Container{}
	var backendPod corev1.PodSpec
	for _, w := range m.workloads {
		for _, c := range w.pod.Spec.Containers {
			b := binaryOfContainer(t, c)
			containers[b] = c
			if b == "tftp-backend" {
				backendPod = w.pod.Spec
			}
		}
	}
	dir := t.TempDir()
	writeConfigMap := func(name, sub string) string {
		cm := m.configMap(name)
		if cm == nil {
			t.Fatalf("no ConfigMap %s", name)
		}
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for k, v := range cm.Data {
			if err := os.WriteFile(filepath.Join(d, k), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}

	// The collector.
	sink := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	var collectorArgs []string
	for _, a := range expandArgs(t, containers["tftp-collector"]) {
		switch {
		case strings.HasPrefix(a, "-listen="):
			a = "-listen=" + sink
		case strings.HasPrefix(a, "-metrics="):
			a = "-metrics=127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
		}
		collectorArgs = append(collectorArgs, a)
	}
	collected := startProcess(t, "tftp-collector", collectorArgs)

	// The backend: its templates from their ConfigMap, the content volume
	// played by examples/tftproot.
	backendAddr := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	mounts := map[string]string{}
	for _, vm := range containers["tftp-backend"].VolumeMounts {
		for _, v := range backendPod.Volumes {
			switch {
			case v.Name != vm.Name:
			case v.ConfigMap != nil:
				mounts[vm.MountPath] = writeConfigMap(v.ConfigMap.Name, v.Name)
			case v.PersistentVolumeClaim != nil:
				mounts[vm.MountPath] = filepath.Join(repoRoot(t), "examples", "tftproot")
			}
		}
	}
	var backendArgs []string
	for _, a := range expandArgs(t, containers["tftp-backend"]) {
		if strings.HasPrefix(a, "-listen=") {
			a = "-listen=" + backendAddr
		}
		for path, local := range mounts {
			a = strings.Replace(a, "="+path, "="+local, 1)
		}
		backendArgs = append(backendArgs, a)
	}
	startProcess(t, "tftp-backend", backendArgs)

	// The edge: the ConfigMap's file, the DaemonSet's flags (without
	// -user, which needs a start as root), the Service names mapped to
	// loopback by flags that override the file.
	edgeAddr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	metrics := "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	configDir := writeConfigMap("tftpgw-config", "tftpgw-config")
	var edgeArgs []string
	for _, a := range expandArgs(t, containers["tftpgw"]) {
		switch {
		case strings.HasPrefix(a, "-user="):
			continue
		case strings.HasPrefix(a, "-config="):
			a = "-config=" + filepath.Join(configDir, filepath.Base(strings.TrimPrefix(a, "-config=")))
		case strings.HasPrefix(a, "-metrics="):
			a = "-metrics=" + metrics
		}
		edgeArgs = append(edgeArgs, a)
	}
	edgeArgs = append(edgeArgs, "-listen="+edgeAddr, "-backend=dns:///"+backendAddr, "-stats-sink="+sink)
	startProcess(t, "tftpgw", edgeArgs)

	deadline := time.Now().Add(20 * time.Second)
	for httpStatus("http://"+metrics+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of the edge is not 200 within 20 s (%d)", httpStatus("http://"+metrics+"/readyz"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := httpStatus("http://" + metrics + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}

	// A client reads the backend's iPXE template through the edge.
	local := filepath.Join(dir, "boot.ipxe")
	if out, code := run(t, "", nil, filepath.Join(built(t), "tftpbench"), "get", edgeAddr, "boot.ipxe", local); code != 0 {
		t.Fatalf("tftpbench get boot.ipxe: exit %d:\n%s", code, out)
	}
	script, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(script), "#!ipxe") || !strings.Contains(string(script), "ip=127.0.0.1 ") {
		t.Errorf("boot.ipxe does not name the client's address 127.0.0.1:\n%s", script)
	}
	for !strings.Contains(collected.String(), `"boot.ipxe"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector received no session for boot.ipxe within 20 s:\n%s", collected.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
