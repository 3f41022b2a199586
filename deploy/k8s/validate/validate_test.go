package validate

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	k8sDir  = ".."       // deploy/k8s
	repoDir = "../../.." // the cloister module
)

// cloister is the binary built from this repository, whose help lists
// the flags the manifests may use.
var cloister string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cloister-k8s-validate-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cloister = filepath.Join(dir, "cloister")
	build := exec.Command("go", "build", "-o", cloister, "./cmd/cloister")
	build.Dir = repoDir
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building cloister: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// object is one decoded manifest: its kind, name and typed value.
type object struct {
	kind, name string
	v          any
}

// decode decodes one YAML document strictly into the type its apiVersion
// and kind name; ok is false for a document that holds nothing.
func decode(doc []byte) (o object, ok bool, err error) {
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	var fields map[string]any
	if err := yaml.Unmarshal(doc, &fields); err != nil {
		return o, false, err
	}
	if len(fields) == 0 {
		return o, false, nil
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return o, false, err
	}
	var v any
	switch head.APIVersion + " " + head.Kind {
	case "apps/v1 StatefulSet":
		v = &appsv1.StatefulSet{}
	case "batch/v1 Job":
		v = &batchv1.Job{}
	case "v1 Service":
		v = &corev1.Service{}
	case "v1 PersistentVolumeClaim":
		v = &corev1.PersistentVolumeClaim{}
	case "v1 Namespace":
		v = &corev1.Namespace{}
	case "networking.k8s.io/v1 NetworkPolicy":
		v = &networkingv1.NetworkPolicy{}
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		v = &kustomize.Kustomization{}
	default:
		return o, false, fmt.Errorf("apiVersion %q kind %q: not a kind these manifests use (add its type to decode)", head.APIVersion, head.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return o, false, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
	}
	return object{kind: head.Kind, name: head.Metadata.Name, v: v}, true, nil
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeAll decodes every document of a YAML stream.
func decodeAll(b []byte) ([]object, error) {
	var out []object
	for i, doc := range docSep.Split(string(b), -1) {
		o, ok, err := decode([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if ok {
			out = append(out, o)
		}
	}
	return out, nil
}

// yamlFiles returns the YAML files under deploy/k8s, relative to it.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == filepath.Join(k8sDir, "validate") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			rel, _ := filepath.Rel(k8sDir, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no YAML files under %s", k8sDir)
	}
	return files
}

// TestManifestsDecodeStrictly: every YAML file, resource or patch, decodes
// strictly into its type, and every one is used by a kustomization.
func TestManifestsDecodeStrictly(t *testing.T) {
	used := map[string]bool{}
	files := yamlFiles(t)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(k8sDir, f))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no object", f)
		}
		for _, o := range objs {
			k, ok := o.v.(*kustomize.Kustomization)
			if !ok {
				continue
			}
			dir := filepath.Dir(f)
			refs := slices.Clone(k.Resources)
			for _, p := range k.Patches {
				if p.Path == "" {
					t.Errorf("%s: a patch without a path (keep patches in files, so that this test decodes them)", f)
				}
				refs = append(refs, p.Path)
			}
			for _, r := range refs {
				path := filepath.Join(k8sDir, dir, r)
				st, err := os.Stat(path)
				if err != nil {
					t.Errorf("%s: %v", f, err)
					continue
				}
				if st.IsDir() {
					if _, err := os.Stat(filepath.Join(path, "kustomization.yaml")); err != nil {
						t.Errorf("%s: resource %s is a directory without a kustomization.yaml", f, r)
					}
					continue
				}
				rel, _ := filepath.Rel(k8sDir, path)
				used[rel] = true
			}
		}
	}
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" && !used[f] {
			t.Errorf("%s: no kustomization uses it", f)
		}
	}
}

// TestKustomizations builds every base and overlay and checks what it
// builds.
func TestKustomizations(t *testing.T) {
	var dirs []string
	for _, f := range yamlFiles(t) {
		if filepath.Base(f) == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	for _, want := range []string{"base/coordinator", "base/node", "overlays/coordinator", "overlays/site"} {
		if !slices.Contains(dirs, filepath.FromSlash(want)) {
			t.Errorf("no kustomization in %s", want)
		}
	}
	for _, dir := range dirs {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			abs, err := filepath.Abs(filepath.Join(k8sDir, dir))
			if err != nil {
				t.Fatal(err)
			}
			res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
			if err != nil {
				t.Fatalf("kustomize build: %v", err)
			}
			out, err := res.AsYaml()
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeAll(out)
			if err != nil {
				t.Fatalf("the built manifests: %v", err)
			}
			checkBundle(t, objs)
		})
	}
}

// pod is a workload's pod template, with the claims its StatefulSet
// makes for it.
type pod struct {
	where  string
	labels map[string]string
	spec   corev1.PodSpec
	claims []string // volumeClaimTemplates
}

// checkBundle checks the objects one kustomization builds.
func checkBundle(t *testing.T, objs []object) {
	t.Helper()
	var pods []pod
	pvcs := map[string]bool{}
	for _, o := range objs {
		switch v := o.v.(type) {
		case *appsv1.StatefulSet:
			p := pod{where: "StatefulSet " + o.name, labels: v.Spec.Template.Labels, spec: v.Spec.Template.Spec}
			for _, c := range v.Spec.VolumeClaimTemplates {
				p.claims = append(p.claims, c.Name)
			}
			checkSelector(t, p.where, v.Spec.Selector, p.labels)
			pods = append(pods, p)
		case *batchv1.Job:
			pods = append(pods, pod{where: "Job " + o.name, labels: v.Spec.Template.Labels, spec: v.Spec.Template.Spec})
		case *corev1.PersistentVolumeClaim:
			pvcs[o.name] = true
		}
	}
	for _, p := range pods {
		checkPod(t, p, pvcs)
	}
	for _, o := range objs {
		switch v := o.v.(type) {
		case *corev1.Service:
			checkService(t, o.name, v, pods)
		case *networkingv1.NetworkPolicy:
			checkNetworkPolicy(t, o.name, v, pods)
		}
	}
}

func checkSelector(t *testing.T, where string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s: selector %v does not select its pods (labels %v): %v", where, sel, podLabels, err)
	}
}

// matching returns the pods a label selector selects.
func matching(sel map[string]string, pods []pod) []pod {
	var out []pod
	for _, p := range pods {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(p.labels)) {
			out = append(out, p)
		}
	}
	return out
}

// hasPort reports whether a container of p declares port (a name, or a
// number).
func hasPort(p pod, port intstr.IntOrString) bool {
	for _, c := range p.spec.Containers {
		for _, cp := range c.Ports {
			if port.Type == intstr.String && cp.Name == port.StrVal || port.Type == intstr.Int && cp.ContainerPort == port.IntVal {
				return true
			}
		}
	}
	return false
}

func checkService(t *testing.T, name string, s *corev1.Service, pods []pod) {
	t.Helper()
	sel := matching(s.Spec.Selector, pods)
	if len(sel) == 0 {
		t.Errorf("Service %s: selector %v selects no pod", name, s.Spec.Selector)
		return
	}
	for _, sp := range s.Spec.Ports {
		for _, p := range sel {
			if !hasPort(p, sp.TargetPort) {
				t.Errorf("Service %s: port %s targets %s, which %s does not declare", name, sp.Name, sp.TargetPort.String(), p.where)
			}
		}
	}
}

func checkNetworkPolicy(t *testing.T, name string, np *networkingv1.NetworkPolicy, pods []pod) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || s.Empty() {
		t.Errorf("NetworkPolicy %s: podSelector %v must select the federation's pods, not all: %v", name, np.Spec.PodSelector, err)
		return
	}
	var sel []pod
	for _, p := range pods {
		if s.Matches(labels.Set(p.labels)) {
			sel = append(sel, p)
		}
	}
	if len(sel) == 0 {
		t.Errorf("NetworkPolicy %s: podSelector %v selects no pod", name, np.Spec.PodSelector)
		return
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy %s: policyTypes %v: want both Ingress and Egress (what is not allowed is denied)", name, np.Spec.PolicyTypes)
	}
	for _, r := range np.Spec.Ingress {
		for _, port := range r.Ports {
			if port.Port == nil {
				t.Errorf("NetworkPolicy %s: an ingress rule open on every port", name)
				continue
			}
			for _, p := range sel {
				if !hasPort(p, *port.Port) {
					t.Errorf("NetworkPolicy %s: ingress to port %s, which %s does not declare", name, port.Port.String(), p.where)
				}
			}
		}
	}
	for _, r := range np.Spec.Egress {
		if len(r.To) == 0 || len(r.Ports) == 0 {
			t.Errorf("NetworkPolicy %s: an egress rule to anywhere or on every port", name)
		}
	}
}

// listenPort maps the daemons' address flags to the name of the container
// port each must bind.
var listenPort = map[string]string{"listen": "grpc", "metrics": "metrics", "health": "health"}

func checkPod(t *testing.T, p pod, pvcs map[string]bool) {
	t.Helper()
	sc := p.spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: the pod must set runAsNonRoot and a non-zero runAsUser", p.where)
	}
	if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod must use the RuntimeDefault seccomp profile", p.where)
	}
	if p.spec.AutomountServiceAccountToken == nil || *p.spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (cloister never talks to the API server)", p.where)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range p.spec.Volumes {
		volumes[v.Name] = v
		if c := v.PersistentVolumeClaim; c != nil && !pvcs[c.ClaimName] {
			t.Errorf("%s: volume %s claims %s, which no PersistentVolumeClaim here defines", p.where, v.Name, c.ClaimName)
		}
	}
	for _, name := range p.claims {
		volumes[name] = corev1.Volume{Name: name}
	}
	for _, c := range p.spec.InitContainers {
		if c.ReadinessProbe != nil || c.LivenessProbe != nil || c.StartupProbe != nil {
			t.Errorf("%s: init container %s has probes", p.where, c.Name)
		}
		checkContainer(t, p.where+" init container "+c.Name, c, volumes)
	}
	if len(p.spec.Containers) == 0 {
		t.Errorf("%s: no container", p.where)
	}
	for _, c := range p.spec.Containers {
		where := p.where + " container " + c.Name
		checkContainer(t, where, c, volumes)
		checkProbes(t, where, c)
	}
}

func checkContainer(t *testing.T, where string, c corev1.Container, volumes map[string]corev1.Volume) {
	t.Helper()
	if repo, _, _ := strings.Cut(c.Image, ":"); repo != "cloister" && !strings.HasSuffix(repo, "/cloister") {
		t.Errorf("%s: image %q is not the cloister image (make image)", where, c.Image)
	}
	if len(c.Command) > 0 {
		t.Errorf("%s: command %q overrides the image's entrypoint (the cloister binary); use args", where, c.Command)
	}
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("%s: resources must request CPU and memory and limit memory (have %v)", where, r)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", where)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: securityContext.runAsNonRoot must be true", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: securityContext.readOnlyRootFilesystem must be true", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: securityContext.allowPrivilegeEscalation must be false", where)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: privileged", where)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: securityContext.capabilities must drop ALL and add none", where)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: mounts %s, which the pod does not define", where, m.Name)
		}
		if v.Secret != nil && !m.ReadOnly {
			t.Errorf("%s: the Secret %s must be mounted read-only", where, m.Name)
		}
		if _, dup := mounts[m.MountPath]; dup {
			t.Errorf("%s: two volumes mounted at %s", where, m.MountPath)
		}
		mounts[m.MountPath] = m
	}
	checkArgs(t, where, c, mounts)
}

// checkArgs checks a container's args: a cloister command and its flags
// (--name=value, or --name for a boolean), every absolute path in a value
// on a mounted volume, the state on a writable one.
func checkArgs(t *testing.T, where string, c corev1.Container, mounts map[string]corev1.VolumeMount) {
	t.Helper()
	args := c.Args
	if len(args) == 0 {
		t.Errorf("%s: no args: name the cloister command", where)
		return
	}
	cmd := []string{args[0]}
	switch args[0] {
	case "coordinator", "node":
	case "kit":
		if len(args) < 2 || args[1] != "install" {
			t.Errorf("%s: args %q: the only kit command a pod runs is kit install", where, args)
			return
		}
		cmd = args[:2]
	default:
		t.Errorf("%s: args[0] %q is not a command a pod runs (coordinator, node, kit install)", where, args[0])
		return
	}
	flags, err := commandFlags(cmd)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range args[len(cmd):] {
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q: want --flag=value", where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		takesValue, ok := flags[name]
		switch {
		case !ok:
			t.Errorf("%s: cloister %s has no flag --%s", where, strings.Join(cmd, " "), name)
			continue
		case takesValue && !hasValue:
			t.Errorf("%s: --%s takes a value: write --%s=VALUE", where, name, name)
			continue
		}
		for _, part := range strings.Split(value, ":") {
			if !strings.HasPrefix(part, "/") {
				continue
			}
			m, ok := mountOf(part, mounts)
			switch {
			case !ok:
				t.Errorf("%s: --%s names %s, which is on no mounted volume (the root filesystem is read-only and holds only the binary)", where, name, part)
			case name == "state" && m.ReadOnly:
				t.Errorf("%s: --state %s is on a read-only mount", where, part)
			}
		}
		if want, ok := listenPort[name]; ok {
			checkListen(t, where, c, name, value, want)
		}
	}
}

// mountOf returns the mount path lies on.
func mountOf(path string, mounts map[string]corev1.VolumeMount) (corev1.VolumeMount, bool) {
	best, found := corev1.VolumeMount{}, false
	for mp, m := range mounts {
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, found
}

// checkListen checks that --flag=HOST:PORT binds the container port named
// want.
func checkListen(t *testing.T, where string, c corev1.Container, flag, value, want string) {
	t.Helper()
	i := strings.LastIndex(value, ":")
	n, err := strconv.Atoi(value[i+1:])
	if i < 0 || err != nil {
		t.Errorf("%s: --%s=%s is not HOST:PORT", where, flag, value)
		return
	}
	for _, cp := range c.Ports {
		if cp.Name == want {
			if cp.ContainerPort != int32(n) {
				t.Errorf("%s: --%s binds port %d but the container's port %s is %d", where, flag, n, want, cp.ContainerPort)
			}
			return
		}
	}
	t.Errorf("%s: --%s binds port %d but the container declares no port named %s", where, flag, n, want)
}

// checkProbes: a container that serves ports has readiness and liveness
// probes on ports it declares; one that serves none must be a node, which
// only dials out and has nothing to probe.
func checkProbes(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	if len(c.Ports) == 0 {
		if len(c.Args) == 0 || c.Args[0] != "node" {
			t.Errorf("%s: declares no port: only a node serves nothing", where)
		}
		if c.ReadinessProbe != nil || c.LivenessProbe != nil {
			t.Errorf("%s: probes, but no port", where)
		}
		return
	}
	for _, pr := range []struct {
		kind  string
		probe *corev1.Probe
	}{{"readiness", c.ReadinessProbe}, {"liveness", c.LivenessProbe}, {"startup", c.StartupProbe}} {
		if pr.probe == nil {
			if pr.kind != "startup" {
				t.Errorf("%s: no %s probe", where, pr.kind)
			}
			continue
		}
		var port intstr.IntOrString
		switch h := pr.probe.ProbeHandler; {
		case h.HTTPGet != nil:
			port = h.HTTPGet.Port
		case h.TCPSocket != nil:
			port = h.TCPSocket.Port
		case h.GRPC != nil:
			port = intstr.FromInt32(h.GRPC.Port)
		default:
			t.Errorf("%s: the %s probe runs a command (the image has no shell): probe a port", where, pr.kind)
			continue
		}
		if !hasPort(pod{spec: corev1.PodSpec{Containers: []corev1.Container{c}}}, port) {
			t.Errorf("%s: the %s probe's port %s is not one the container declares", where, pr.kind, port.String())
		}
	}
}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]map[string]bool{}
	flagLine   = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)( \S+)?$`)
)

// commandFlags returns the flags of `cloister CMD…` (and whether each
// takes a value), from its -h output.
func commandFlags(cmd []string) (map[string]bool, error) {
	key := strings.Join(cmd, " ")
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if f, ok := flagsCache[key]; ok {
		return f, nil
	}
	var out bytes.Buffer
	h := exec.Command(cloister, append(slices.Clone(cmd), "-h")...)
	h.Stdout, h.Stderr = &out, &out
	if err := h.Run(); err != nil {
		return nil, fmt.Errorf("cloister %s -h: %v\n%s", key, err, out.String())
	}
	f := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
		f[m[1]] = m[2] != ""
	}
	if len(f) == 0 {
		return nil, fmt.Errorf("cloister %s -h lists no flags:\n%s", key, out.String())
	}
	flagsCache[key] = f
	return f, nil
}

// TestCommandFlags: the help parser reads what the checks rely on.
func TestCommandFlags(t *testing.T) {
	f, err := commandFlags([]string{"coordinator"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	if !f["kit"] || !f["listen"] || f["metrics-tls"] || !slices.Contains(names, "metrics-tls") {
		t.Errorf("coordinator flags %v: want kit and listen with values, metrics-tls a boolean", names)
	}
	if _, err := commandFlags([]string{"kit", "install"}); err != nil {
		t.Error(err)
	}
}
