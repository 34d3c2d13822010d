package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// namespace is where every object of the example lives.
const namespace = "tftpgw"

// manifests is a set of objects applied together, decoded into the
// Kubernetes API types.
type manifests struct {
	namespaces  []*corev1.Namespace
	configMaps  []*corev1.ConfigMap
	services    []*corev1.Service
	claims      []*corev1.PersistentVolumeClaim
	pdbs        []*policyv1.PodDisruptionBudget
	workloads   []workload
	namespaced  []metav1.Object
	sourceFiles map[metav1.Object]string
}

// workload is a Deployment or a DaemonSet.
type workload struct {
	kind     string
	meta     metav1.ObjectMeta
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func (w workload) String() string { return w.kind + " " + w.meta.Name }

// decodeStrict decodes one YAML document into the API type of its
// apiVersion and kind. Unknown fields, duplicate fields and values of the
// wrong type are errors, and so is a kind the example does not use.
func (m *manifests) decodeStrict(doc []byte, file string) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var obj metav1.Object
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		o := &corev1.Namespace{}
		m.namespaces, obj = append(m.namespaces, o), o
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		m.configMaps, obj = append(m.configMaps, o), o
	case "v1 Service":
		o := &corev1.Service{}
		m.services, obj = append(m.services, o), o
	case "v1 PersistentVolumeClaim":
		o := &corev1.PersistentVolumeClaim{}
		m.claims, obj = append(m.claims, o), o
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		m.pdbs, obj = append(m.pdbs, o), o
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "apps/v1 DaemonSet":
		obj = &appsv1.DaemonSet{}
	default:
		return fmt.Errorf("apiVersion %q kind %q: not a type this test knows", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s %s: %w", tm.Kind, obj.GetName(), err)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m.workloads = append(m.workloads, workload{"Deployment", o.ObjectMeta, o.Spec.Selector, o.Spec.Template})
	case *appsv1.DaemonSet:
		m.workloads = append(m.workloads, workload{"DaemonSet", o.ObjectMeta, o.Spec.Selector, o.Spec.Template})
	}
	if tm.Kind != "Namespace" {
		m.namespaced = append(m.namespaced, obj)
	}
	if m.sourceFiles == nil {
		m.sourceFiles = map[metav1.Object]string{}
	}
	m.sourceFiles[obj] = file
	return nil
}

// loadManifests decodes every document of the files, strictly.
func loadManifests(t *testing.T, files ...string) (*manifests, error) {
	t.Helper()
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.decodeFile(b, f); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *manifests) decodeFile(b []byte, file string) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", file, n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		if err := m.decodeStrict(doc, file); err != nil {
			return fmt.Errorf("%s: document %d: %w", file, n, err)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// The two sets the README applies: the DaemonSet with the rest, or the
// single-port alternative in its place.
func manifestSets(t *testing.T) map[string][]string {
	t.Helper()
	base, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(base) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	alt, err := filepath.Glob(filepath.Join("kubernetes", "single-port", "*.yaml"))
	if err != nil || len(alt) == 0 {
		t.Fatalf("no manifests in kubernetes/single-port/: %v", err)
	}
	var withoutDaemonSet []string
	for _, f := range base {
		if filepath.Base(f) != "tftpgw-daemonset.yaml" {
			withoutDaemonSet = append(withoutDaemonSet, f)
		}
	}
	if len(withoutDaemonSet) == len(base) {
		t.Fatal("kubernetes/tftpgw-daemonset.yaml is missing")
	}
	return map[string][]string{
		"hostNetwork DaemonSet": base,
		"single-port Service":   append(withoutDaemonSet, alt...),
	}
}

func TestKubernetesManifestsDecodeStrictlyAndHangTogether(t *testing.T) {
	for name, files := range manifestSets(t) {
		t.Run(name, func(t *testing.T) {
			m, err := loadManifests(t, files...)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range m.check() {
				t.Error(problem)
			}
			checkEdges(t, m)
			checkBackendAndCollector(t, m)
		})
	}
}

// check returns what does not hang together in the set: names that refer
// to nothing, selectors that select nothing, ports that do not exist.
func (m *manifests) check() []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	if !slices.ContainsFunc(m.namespaces, func(n *corev1.Namespace) bool { return n.Name == namespace }) {
		add("no Namespace %s", namespace)
	}
	for _, o := range m.namespaced {
		if o.GetNamespace() != namespace {
			add("%s (%s): namespace %q, want %q", o.GetName(), m.sourceFiles[o], o.GetNamespace(), namespace)
		}
	}
	images := map[string]bool{}
	for _, w := range m.workloads {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.pod.Labels)) {
			add("%s: selector %v does not select its own pods (%v, %v)", w, w.selector, w.pod.Labels, err)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range w.pod.Spec.Volumes {
			volumes[v.Name] = v
			switch {
			case v.ConfigMap != nil:
				cm := m.configMap(v.ConfigMap.Name)
				if cm == nil {
					add("%s: volume %s: no ConfigMap %s", w, v.Name, v.ConfigMap.Name)
				}
				for _, it := range v.ConfigMap.Items {
					if _, ok := cm.Data[it.Key]; cm != nil && !ok {
						add("%s: volume %s: ConfigMap %s has no key %s", w, v.Name, cm.Name, it.Key)
					}
				}
			case v.PersistentVolumeClaim != nil:
				if !slices.ContainsFunc(m.claims, func(c *corev1.PersistentVolumeClaim) bool { return c.Name == v.PersistentVolumeClaim.ClaimName }) {
					add("%s: volume %s: no PersistentVolumeClaim %s", w, v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
		for _, c := range w.pod.Spec.Containers {
			images[c.Image] = true
			for _, vm := range c.VolumeMounts {
				if _, ok := volumes[vm.Name]; !ok {
					add("%s: container %s mounts %s, which is not a volume of the pod", w, c.Name, vm.Name)
				}
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if p == nil {
					add("%s: container %s lacks a readiness or a liveness probe", w, c.Name)
					continue
				}
				switch {
				case p.HTTPGet != nil:
					if _, ok := containerPort(c, p.HTTPGet.Port, corev1.ProtocolTCP); !ok {
						add("%s: container %s: probe on port %s, which it does not declare", w, c.Name, p.HTTPGet.Port.String())
					}
				case p.GRPC != nil:
					if _, ok := containerPort(c, intstr.FromInt32(p.GRPC.Port), corev1.ProtocolTCP); !ok {
						add("%s: container %s: gRPC probe on port %d, which it does not declare", w, c.Name, p.GRPC.Port)
					}
				default:
					add("%s: container %s: a probe that is neither httpGet nor grpc", w, c.Name)
				}
			}
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				add("%s: container %s: want readOnlyRootFilesystem, no privilege escalation, capabilities dropped", w, c.Name)
			}
		}
	}
	if len(images) != 1 {
		add("workloads use images %v: want the one image of examples/deploy/Dockerfile", images)
	}
	for _, s := range m.services {
		selected := m.selected(s.Spec.Selector)
		if len(selected) == 0 {
			add("Service %s: selector %v selects no workload's pods", s.Name, s.Spec.Selector)
		}
		for _, w := range selected {
			for _, sp := range s.Spec.Ports {
				found := false
				for _, c := range w.pod.Spec.Containers {
					_, ok := containerPort(c, sp.TargetPort, sp.Protocol)
					found = found || ok
				}
				if !found {
					add("Service %s: port %s targets %s/%s, which %s does not declare", s.Name, sp.Name, sp.TargetPort.String(), sp.Protocol, w)
				}
			}
		}
	}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || !slices.ContainsFunc(m.workloads, func(w workload) bool { return sel.Matches(labels.Set(w.pod.Labels)) }) {
			add("PodDisruptionBudget %s selects no workload (%v)", p.Name, err)
		}
	}
	return problems
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (m *manifests) selected(selector map[string]string) []workload {
	var ws []workload
	if len(selector) == 0 {
		return nil
	}
	for _, w := range m.workloads {
		if labels.SelectorFromSet(selector).Matches(labels.Set(w.pod.Labels)) {
			ws = append(ws, w)
		}
	}
	return ws
}

// containerPort finds the container's port a Service or probe port names.
func containerPort(c corev1.Container, p intstr.IntOrString, proto corev1.Protocol) (int32, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		cpProto := cp.Protocol
		if cpProto == "" {
			cpProto = corev1.ProtocolTCP
		}
		if cpProto != proto {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// binaryOfContainer is which binary of the image a container runs.
func binaryOfContainer(t *testing.T, c corev1.Container) string {
	t.Helper()
	if len(c.Command) == 0 {
		return "tftpgw" // the image's ENTRYPOINT
	}
	name, ok := strings.CutPrefix(c.Command[0], "/usr/local/bin/")
	if !ok || len(c.Command) != 1 || !slices.Contains(binaries, name) {
		t.Fatalf("container %s: command %q: want one of the image's binaries alone", c.Name, c.Command)
	}
	return name
}

// fieldRefValues stand for what the kubelet puts in $(VAR) for the
// downward API fields the manifests use.
var fieldRefValues = map[string]string{
	"spec.nodeName": "node-1",
	"status.podIP":  "127.0.0.1",
	"metadata.name": "tftpgw-7d9f-abcde",
}

// expandArgs does the kubelet's $(VAR) expansion of a container's args.
func expandArgs(t *testing.T, c corev1.Container) []string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := fieldRefValues[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("container %s: env %s: no test value for fieldRef %s", c.Name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var out []string
	for _, a := range c.Args {
		out = append(out, ref.ReplaceAllStringFunc(a, func(s string) string {
			name := s[2 : len(s)-1]
			v, ok := env[name]
			if !ok {
				t.Errorf("container %s: %s in %q is no env var of the container (the kubelet would pass it as is)", c.Name, s, a)
			}
			return v
		}))
	}
	return out
}

// edgeConfig is what the checks read of the edges' configuration file.
type edgeConfig struct {
	Listen  any `json:"listen"`
	Backend struct {
		Target string `json:"target"`
	} `json:"backend"`
	Stats struct {
		Sink string `json:"sink"`
	} `json:"stats"`
}

// checkEdges checks the tftpgw workloads: their configuration file and
// command lines pass tftpgw -check, the probes ask /readyz and /healthz of
// the metrics listener, the backend and the stats sink are Services of the
// set, and the pod can bind what it listens on.
func checkEdges(t *testing.T, m *manifests) {
	t.Helper()
	edges := 0
	for _, w := range m.workloads {
		for _, c := range w.pod.Spec.Containers {
			if binaryOfContainer(t, c) != "tftpgw" {
				continue
			}
			edges++
			args := expandArgs(t, c)
			if bad := checkArgs(t, "tftpgw", args); len(bad) > 0 {
				t.Errorf("%s: args: %s", w, strings.Join(bad, "; "))
			}

			// The configuration file, from its ConfigMap volume.
			configArg, ok := flagValue(args, "config")
			if !ok {
				t.Fatalf("%s: no -config", w)
			}
			dir := t.TempDir()
			var mount *corev1.VolumeMount
			for i, vm := range c.VolumeMounts {
				if strings.HasPrefix(configArg, vm.MountPath+"/") {
					mount = &c.VolumeMounts[i]
				}
			}
			if mount == nil {
				t.Fatalf("%s: -config %s is on no volume mount", w, configArg)
			}
			var cm *corev1.ConfigMap
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == mount.Name && v.ConfigMap != nil {
					cm = m.configMap(v.ConfigMap.Name)
				}
			}
			if cm == nil {
				t.Fatalf("%s: -config %s is not from a ConfigMap of the set", w, configArg)
			}
			for k, v := range cm.Data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			localConfig := filepath.Join(dir, strings.TrimPrefix(configArg, mount.MountPath+"/"))
			checkTftpgw(t, []string{"-config", localConfig})

			// The command line as the pod runs it. -user names the image's
			// nonroot (65532), which this machine does not have: -check
			// looks the user up, so it gets one that exists here.
			var local []string
			for _, a := range args {
				a = strings.Replace(a, configArg, localConfig, 1)
				if strings.HasPrefix(a, "-user=") {
					nobody, err := user.Lookup("nobody")
					if err != nil {
						t.Fatalf("-user: no user nobody here to stand for the image's nonroot: %v", err)
					}
					a = "-user=" + nobody.Username
				}
				local = append(local, a)
			}
			checkTftpgw(t, local)

			var cfg edgeConfig
			if err := yaml.Unmarshal([]byte(cm.Data[filepath.Base(localConfig)]), &cfg); err != nil {
				t.Fatalf("%s: %v", cm.Name, err)
			}
			// The backend: dns:///NAME:PORT of a headless Service.
			name, port, ok := strings.Cut(strings.TrimPrefix(cfg.Backend.Target, "dns:///"), ":")
			if !strings.HasPrefix(cfg.Backend.Target, "dns:///") || !ok {
				t.Errorf("%s: backend.target %q: want dns:///SERVICE:PORT", cm.Name, cfg.Backend.Target)
			} else if s := m.service(name); s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone || !servicePort(s, port) {
				t.Errorf("%s: backend.target %q: want a headless Service %s with port %s in the set", cm.Name, cfg.Backend.Target, name, port)
			}
			// The stats sink: NAME:PORT of a Service.
			name, port, _ = strings.Cut(cfg.Stats.Sink, ":")
			if s := m.service(name); s == nil || !servicePort(s, port) {
				t.Errorf("%s: stats.sink %q: want a Service %s with port %s in the set", cm.Name, cfg.Stats.Sink, name, port)
			}

			// The probes: /readyz and /healthz of the metrics listener.
			metrics, ok := flagValue(args, "metrics")
			if !ok {
				t.Errorf("%s: no -metrics: the probes need it", w)
			} else {
				checkHTTPProbes(t, w, c, portOf(t, metrics))
			}

			// Binding the TFTP port: port 69 on the node's network needs
			// the start as root with -user; anything else runs as nonroot.
			listen := ":69"
			if l, ok := flagValue(args, "listen"); ok {
				listen = l
			} else if s, ok := cfg.Listen.(string); ok {
				listen = s
			}
			sc := c.SecurityContext
			if w.pod.Spec.HostNetwork {
				if w.pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
					t.Errorf("%s: hostNetwork with dnsPolicy %q: the Service names do not resolve; want ClusterFirstWithHostNet", w, w.pod.Spec.DNSPolicy)
				}
				if _, ok := flagValue(args, "user"); !ok {
					t.Errorf("%s: hostNetwork on port 69 without -user: it would serve as root", w)
				}
				for _, capability := range []corev1.Capability{"NET_BIND_SERVICE", "SETUID", "SETGID"} {
					if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Add, capability) {
						t.Errorf("%s: hostNetwork: -user needs capability %s", w, capability)
					}
				}
				if _, ok := containerPort(c, intstr.FromString("tftp"), corev1.ProtocolUDP); !ok || portOf(t, listen) != 69 {
					t.Errorf("%s: hostNetwork: want a UDP port named tftp and to listen on 69 (listen %s)", w, listen)
				}
			} else {
				if p := portOf(t, listen); p < 1024 {
					t.Errorf("%s: listens on port %d, which needs privilege: listen above 1024 and let the Service map 69 to it", w, p)
				}
				if !hasFlag(args, "single-port") {
					t.Errorf("%s: behind a Service (NAT) without -single-port: the client's ACKs to a session port would never arrive", w)
				}
				checkRunsAsImageUser(t, w)
			}
		}
	}
	if edges == 0 {
		t.Error("no tftpgw workload in the set")
	}
}

func servicePort(s *corev1.Service, port string) bool {
	return slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port })
}

// checkHTTPProbes checks readiness on /readyz and liveness on /healthz, on
// the container port of the metrics listener.
func checkHTTPProbes(t *testing.T, w workload, c corev1.Container, metricsPort int) {
	t.Helper()
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.ReadinessProbe, "/readyz"}, {c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s: container %s: want an httpGet probe of %s", w, c.Name, p.path)
			continue
		}
		if n, ok := containerPort(c, p.probe.HTTPGet.Port, corev1.ProtocolTCP); !ok || int(n) != metricsPort {
			t.Errorf("%s: container %s: %s probed on port %s, the metrics listener is on %d", w, c.Name, p.path, p.probe.HTTPGet.Port.String(), metricsPort)
		}
	}
}

// checkRunsAsImageUser checks that a pod runs as the image's USER, as a
// non-root user Kubernetes can verify.
func checkRunsAsImageUser(t *testing.T, w workload) {
	t.Helper()
	imageUser := imageUser(t)
	uid, _, _ := strings.Cut(imageUser, ":")
	sc := w.pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || strconv.Itoa(int(*sc.RunAsUser)) != uid {
		t.Errorf("%s: want runAsNonRoot and runAsUser %s (the image's USER %s)", w, uid, imageUser)
	}
}

// checkBackendAndCollector checks the content service and the stats sink:
// their flags exist, the backend's port is its Service's, the collector is
// probed on its metrics listener, and the backend's templates parse and
// render.
func checkBackendAndCollector(t *testing.T, m *manifests) {
	t.Helper()
	for _, w := range m.workloads {
		for _, c := range w.pod.Spec.Containers {
			bin := binaryOfContainer(t, c)
			if bin == "tftpgw" {
				continue
			}
			args := expandArgs(t, c)
			if bad := checkArgs(t, bin, args); len(bad) > 0 {
				t.Errorf("%s: args: %s", w, strings.Join(bad, "; "))
			}
			listen, ok := flagValue(args, "listen")
			if !ok {
				t.Errorf("%s: no -listen (the default is a loopback address)", w)
				continue
			}
			if _, ok := containerPort(c, intstr.FromInt(portOf(t, listen)), corev1.ProtocolTCP); !ok {
				t.Errorf("%s: listens on %s, which the container does not declare", w, listen)
			}
			checkRunsAsImageUser(t, w)
			switch bin {
			case "tftp-collector":
				metrics, ok := flagValue(args, "metrics")
				if !ok {
					t.Errorf("%s: no -metrics: the probes need it", w)
				} else {
					checkHTTPProbes(t, w, c, portOf(t, metrics))
				}
			case "tftp-backend":
				if p := c.ReadinessProbe; p == nil || p.GRPC == nil || int(p.GRPC.Port) != portOf(t, listen) {
					t.Errorf("%s: want a gRPC readiness probe (grpc.health.v1) on %s", w, listen)
				}
				if dir, ok := flagValue(args, "templates"); ok {
					checkTemplates(t, m, w, c, dir)
				}
			}
		}
	}
}

// checkTemplates parses and renders the templates of tftp-backend's
// -templates directory, from its ConfigMap, with the fields tftp-backend
// gives them.
func checkTemplates(t *testing.T, m *manifests, w workload, c corev1.Container, dir string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm := m.configMap(v.ConfigMap.Name)
			if cm == nil {
				return // reported by check
			}
			for name, text := range cm.Data {
				if !strings.HasSuffix(name, ".tmpl") {
					t.Errorf("ConfigMap %s: %s is not a template (NAME.tmpl)", cm.Name, name)
					continue
				}
				tmpl, err := template.New(name).Option("missingkey=error").Parse(text)
				if err != nil {
					t.Errorf("ConfigMap %s: %v", cm.Name, err)
					continue
				}
				var out bytes.Buffer
				data := map[string]any{
					"ClientIP": "10.1.2.3", "ClientPort": 2070, "LocalIP": "10.0.0.5", "LocalPort": 69,
					"MAC": "", "Path": strings.TrimSuffix(name, ".tmpl"), "RawPath": strings.TrimSuffix(name, ".tmpl"),
					"Mode": "octet", "Options": map[string]string{},
				}
				if err := tmpl.Execute(&out, data); err != nil {
					t.Errorf("ConfigMap %s: %v", cm.Name, err)
				} else if !strings.Contains(out.String(), "10.1.2.3") {
					t.Errorf("ConfigMap %s: %s does not name the client's address:\n%s", cm.Name, name, out.String())
				}
			}
			return
		}
	}
	t.Errorf("%s: -templates %s is not a ConfigMap volume", w, dir)
}

// The decoding is strict and the cross-checks can fail: each mistake below
// must be refused.
func TestKubernetesChecksCatchMistakes(t *testing.T) {
	files := manifestSets(t)["hostNetwork DaemonSet"]
	for _, tc := range []struct {
		name, file, old, new string
	}{
		{"misspelled field", "tftpgw-daemonset.yaml", "readinessProbe:", "readinesProbe:"},
		{"value of the wrong type", "tftp-backend.yaml", "replicas: 2", "replicas: two"},
		{"field at the wrong level", "tftpgw-daemonset.yaml", "      hostNetwork: true", "      hostNetwork: true\n      containerPort: 69"},
		{"unknown kind", "namespace.yaml", "kind: Namespace", "kind: Namespaces"},
		{"Service selecting nothing", "tftp-collector.yaml", "  selector:\n    app.kubernetes.io/name: tftp-collector\n  ports:", "  selector:\n    app.kubernetes.io/name: tftp-colector\n  ports:"},
		{"probe on an undeclared port", "tftp-collector.yaml", "              path: /readyz\n              port: metrics", "              path: /readyz\n              port: metric"},
		{"missing ConfigMap", "tftpgw-daemonset.yaml", "name: tftpgw-config", "name: tftpgw-configuration"},
		{"object in another namespace", "tftp-backend.yaml", "  name: tftp-content\n  namespace: tftpgw", "  name: tftp-content\n  namespace: default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &manifests{}
			var err error
			changed := false
			for _, f := range files {
				b, rerr := os.ReadFile(f)
				if rerr != nil {
					t.Fatal(rerr)
				}
				if filepath.Base(f) == tc.file {
					if !bytes.Contains(b, []byte(tc.old)) {
						t.Fatalf("%s has no %q", tc.file, tc.old)
					}
					b = bytes.Replace(b, []byte(tc.old), []byte(tc.new), 1)
					changed = true
				}
				if err = m.decodeFile(b, f); err != nil {
					break
				}
			}
			if !changed {
				t.Fatalf("no file %s", tc.file)
			}
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			if problems := m.check(); len(problems) > 0 {
				t.Logf("refused: %v", problems)
				return
			}
			t.Errorf("accepted the manifests with a %s", tc.name)
		})
	}
}
