package deploy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/passerelle/passerelle/internal/bytesize"
	"github.com/passerelle/passerelle/internal/config"
)

const (
	k8sBase      = "kubernetes/base"
	k8sScaleOut  = "kubernetes/overlays/scale-out"
	promRulePath = "kubernetes/base/prometheusrule.yaml"
	secretsMount = "/run/secrets/passerelle"
	readmePath   = "../README.md"
)

var update = flag.Bool("update", false, "rewrite "+promRulePath+" from "+rulesPath)

// --- PrometheusRule: the same rules as prometheus/rules, for the Prometheus Operator ---

// prometheusRule renders the PrometheusRule holding the groups of the rules file, comments and
// string styles kept (the groups are copied as a YAML node).
func prometheusRule(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	var groups *yaml.Node
	if root := doc.Content[0]; root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "groups" {
				groups = root.Content[i+1]
			}
		}
	}
	if groups == nil {
		t.Fatalf("%s: no groups", rulesPath)
	}
	unfold(groups)
	type meta struct {
		Name string `yaml:"name"`
	}
	type spec struct {
		Groups *yaml.Node `yaml:"groups"`
	}
	out := struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   meta   `yaml:"metadata"`
		Spec       spec   `yaml:"spec"`
	}{"monitoring.coreos.com/v1", "PrometheusRule", meta{"passerelle"}, spec{groups}}
	var buf bytes.Buffer
	buf.WriteString("# Generated from ../../prometheus/rules/passerelle.rules.yml by\n" +
		"#   go test ./deploy/ -run TestPrometheusRuleMatchesRules -update\n" +
		"# Do not edit: edit the rules file (its promtool tests cover these rules) and regenerate.\n" +
		"# Your Prometheus' ruleSelector may ask for a label (kube-prometheus-stack: release=<name>):\n" +
		"# add it with a patch in your overlay.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unfold drops the folded style (>-) of the rules file's strings: yaml.v3 re-encodes a folded
// string with more-indented lines (the ShopAppPollStale expression) into a different value.
func unfold(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Style == yaml.FoldedStyle {
		n.Style = 0
		if strings.Contains(n.Value, "\n") {
			n.Style = yaml.LiteralStyle
		}
	}
	for _, c := range n.Content {
		unfold(c)
	}
}

func TestPrometheusRuleMatchesRules(t *testing.T) {
	want := prometheusRule(t)
	if *update {
		if err := os.WriteFile(promRulePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(promRulePath)
	if err != nil {
		t.Fatal(err)
	}
	// The same rules, whatever the layout: compare what both files mean.
	var rules struct {
		Groups any `yaml:"groups"`
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups any `yaml:"groups"`
		} `yaml:"spec"`
	}
	readYAML(t, rulesPath, &rules)
	if err := yaml.Unmarshal(got, &pr); err != nil {
		t.Fatalf("%s: %v", promRulePath, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s: %s %s, want monitoring.coreos.com/v1 PrometheusRule", promRulePath, pr.APIVersion, pr.Kind)
	}
	if !reflect.DeepEqual(pr.Spec.Groups, rules.Groups) {
		t.Errorf("%s does not hold the rules of %s: go test ./deploy/ -run TestPrometheusRuleMatchesRules -update", promRulePath, rulesPath)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not as generated: go test ./deploy/ -run TestPrometheusRuleMatchesRules -update", promRulePath)
	}
}

// --- Rendering a kustomization ---

// obj is one Kubernetes object, as decoded YAML.
type obj = map[string]any

// get walks a decoded YAML value along keys (map keys, or list indexes as numbers).
func get(v any, keys ...string) any {
	for _, k := range keys {
		switch m := v.(type) {
		case map[string]any:
			v = m[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(m) {
				return nil
			}
			v = m[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any, keys ...string) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func strMap(v any, keys ...string) map[string]string {
	out := map[string]string{}
	m, _ := get(v, keys...).(map[string]any)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// kustomizeCommand finds a kustomize: ../bin/kustomize (make kubeconform installs it), one on PATH,
// or kubectl's built-in one. Without any the rendering tests skip, and fail under CI=true.
func kustomizeCommand(t *testing.T) []string {
	t.Helper()
	if p, err := filepath.Abs("../bin/kustomize"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return []string{p, "build"}
		}
	}
	if p, err := exec.LookPath("kustomize"); err == nil {
		return []string{p, "build"}
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return []string{p, "kustomize"}
	}
	const msg = "no kustomize: make kubeconform installs one in bin/"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// render builds the kustomization in dir and returns its objects, and the rendered YAML.
func render(t *testing.T, dir string) ([]obj, []byte) {
	t.Helper()
	cmd := kustomizeCommand(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, cmd[0], append(cmd[1:], dir)...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(cmd[0]), dir, err, stderr.Bytes())
	}
	var objs []obj
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o obj
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("rendered %s: %v", dir, err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs, out
}

// byKind returns the objects of kind.
func byKind(objs []obj, kind string) []obj {
	var out []obj
	for _, o := range objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the only object of kind, failing the test otherwise.
func one(t *testing.T, objs []obj, kind string) obj {
	t.Helper()
	l := byKind(objs, kind)
	if len(l) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(l), kind)
	}
	return l[0]
}

// selects says whether selector (matchLabels or a Service's selector) picks labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// readmeVars reads the README's configuration table: each variable, and whether it also has a
// _FILE form.
func readmeVars(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(PASSERELLE_[A-Z0-9_]+)` \\|.*$")
	vars := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		vars[m[1]] = strings.Contains(m[0], "`"+m[1]+"_FILE`")
	}
	if len(vars) < 20 {
		t.Fatalf("%s: found %d variables in the configuration table: fix readmeVars", readmePath, len(vars))
	}
	return vars
}

// checkReadmeVar reports a PASSERELLE_* name the README's table does not list (or a _FILE form it
// does not offer).
func checkReadmeVar(t *testing.T, table map[string]bool, where, name string) {
	t.Helper()
	if _, ok := table[name]; ok {
		return
	}
	if base, ok := strings.CutSuffix(name, "_FILE"); ok && table[base] {
		return
	}
	t.Errorf("%s: %s is not a variable of the README's configuration table", where, name)
}

// daemon is what the structural checks read of a rendered kustomization.
type daemon struct {
	objs       []obj
	deploy     obj
	container  obj
	podLabels  map[string]string
	ports      map[string]int // container port name → number
	config     map[string]string
	secret     map[string][]byte
	volumes    map[string]obj // volume name → volume
	mounts     map[string]string
	fileEnv    map[string]string // PASSERELLE_*_FILE → path
	shutdownTO time.Duration
}

// checkDaemon runs the checks both the base and the overlay must pass, and returns what they read.
func checkDaemon(t *testing.T, dir string) daemon {
	objs, _ := render(t, dir)
	d := daemon{objs: objs, ports: map[string]int{}, volumes: map[string]obj{}, mounts: map[string]string{},
		fileEnv: map[string]string{}, secret: map[string][]byte{}, shutdownTO: 30 * time.Second}
	d.deploy = one(t, objs, "Deployment")
	tmpl := get(d.deploy, "spec", "template")
	d.podLabels = strMap(tmpl, "metadata", "labels")
	if sel := strMap(d.deploy, "spec", "selector", "matchLabels"); !selects(sel, d.podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", sel, d.podLabels)
	}
	containers := list(tmpl, "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	d.container, _ = containers[0].(obj)
	c := d.container

	// Ports, and probes on the admin port.
	for _, p := range list(c, "ports") {
		n, _ := get(p, "containerPort").(int)
		d.ports[str(p, "name")] = n
	}
	if d.ports["webhook"] != 8080 || d.ports["admin"] != 9090 {
		t.Errorf("container ports %v, want webhook 8080 and admin 9090", d.ports)
	}
	portOf := func(v any) int {
		switch p := v.(type) {
		case int:
			return p
		case string:
			return d.ports[p]
		}
		return 0
	}
	for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := str(c, probe, "httpGet", "path"); got != want {
			t.Errorf("%s path %q, want %s", probe, got, want)
		}
		if got := portOf(get(c, probe, "httpGet", "port")); got != 9090 {
			t.Errorf("%s on port %d, want the admin port 9090", probe, got)
		}
	}

	// Non-root, read-only root file system.
	if get(tmpl, "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if uid, _ := get(tmpl, "spec", "securityContext", "runAsUser").(int); uid == 0 {
		t.Error("pod securityContext.runAsUser is 0 or unset")
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("container securityContext: want readOnlyRootFilesystem true and allowPrivilegeEscalation false")
	}
	if drop := list(c, "securityContext", "capabilities", "drop"); !slices.Contains(drop, any("ALL")) {
		t.Errorf("container drops capabilities %v, want ALL", drop)
	}

	// Volumes and mounts.
	for _, v := range list(tmpl, "spec", "volumes") {
		o, _ := v.(obj)
		d.volumes[str(o, "name")] = o
	}
	for _, m := range list(c, "volumeMounts") {
		if _, ok := d.volumes[str(m, "name")]; !ok {
			t.Errorf("volumeMount %s: no such volume", str(m, "name"))
		}
		d.mounts[str(m, "mountPath")] = str(m, "name")
	}

	// Configuration: the generated ConfigMap and Secret, referenced by their hashed names.
	cm := one(t, objs, "ConfigMap")
	d.config = strMap(cm, "data")
	refs := list(c, "envFrom")
	if len(refs) != 1 || str(refs[0], "configMapRef", "name") != str(cm, "metadata", "name") {
		t.Errorf("envFrom %v, want the ConfigMap %s", refs, str(cm, "metadata", "name"))
	}
	sec := one(t, objs, "Secret")
	for k, v := range strMap(sec, "data") {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Errorf("Secret key %s: %v", k, err)
		}
		d.secret[k] = b
	}
	if v := d.volumes[d.mounts[secretsMount]]; str(v, "secret", "secretName") != str(sec, "metadata", "name") {
		t.Errorf("%s is not the Secret %s", secretsMount, str(sec, "metadata", "name"))
	}

	// Every variable set is one the README documents and the daemon reads; every _FILE names a
	// key of the mounted Secret.
	table := readmeVars(t)
	var names []string
	for k := range d.config {
		names = append(names, k)
		checkReadmeVar(t, table, "ConfigMap", k)
	}
	for _, e := range list(c, "env") {
		name, value := str(e, "name"), str(e, "value")
		names = append(names, name)
		checkReadmeVar(t, table, "Deployment env", name)
		if strings.HasSuffix(name, "_FILE") {
			d.fileEnv[name] = value
			if dir, key := path.Split(value); path.Clean(dir) != secretsMount {
				t.Errorf("%s=%s is not under the Secret's mount %s", name, value, secretsMount)
			} else if _, ok := d.secret[key]; !ok {
				t.Errorf("%s=%s: the Secret has no key %s", name, value, key)
			}
		}
		if _, both := d.config[name]; both {
			t.Errorf("%s is set both in the ConfigMap and in the Deployment", name)
		}
	}
	checkVars(t, dir, names)

	// The daemon listens where the ports, probes and volume say.
	if _, port, err := net.SplitHostPort(d.config["PASSERELLE_ADMIN_ADDR"]); err != nil || port != "9090" ||
		strings.HasPrefix(d.config["PASSERELLE_ADMIN_ADDR"], "127.") {
		t.Errorf("PASSERELLE_ADMIN_ADDR=%q: want all interfaces, port 9090 (probes and scrapes come from outside the pod)", d.config["PASSERELLE_ADMIN_ADDR"])
	}
	if _, port, err := net.SplitHostPort(d.config["PASSERELLE_HTTP_ADDR"]); err != nil || port != "8080" {
		t.Errorf("PASSERELLE_HTTP_ADDR=%q: want port 8080", d.config["PASSERELLE_HTTP_ADDR"])
	}
	if dataDir := d.config["PASSERELLE_DATA_DIR"]; d.mounts[dataDir] == "" {
		t.Errorf("PASSERELLE_DATA_DIR=%q is not a mounted volume (the root file system is read-only)", dataDir)
	}
	if v, ok := d.config["PASSERELLE_SHUTDOWN_TIMEOUT"]; ok {
		var err error
		if d.shutdownTO, err = time.ParseDuration(v); err != nil {
			t.Errorf("PASSERELLE_SHUTDOWN_TIMEOUT=%q: %v", v, err)
		}
	}
	if grace, _ := get(tmpl, "spec", "terminationGracePeriodSeconds").(int); time.Duration(grace)*time.Second <= d.shutdownTO {
		t.Errorf("terminationGracePeriodSeconds %d is not above PASSERELLE_SHUTDOWN_TIMEOUT %v", grace, d.shutdownTO)
	}
	// The Go runtime's soft limit must leave the container's room for what is not Go heap.
	limit := str(c, "resources", "limits", "memory")
	container, err := bytesize.Parse(strings.TrimSuffix(limit, "i") + "iB") // Kubernetes writes 512Mi for 512MiB
	if mem, ok := d.config["PASSERELLE_MEMORY_LIMIT"]; !ok || err != nil {
		t.Errorf("PASSERELLE_MEMORY_LIMIT %q and resources.limits.memory %q: want both (a limit in Mi or Gi)", mem, limit)
	} else if soft, err := config.ParseMemoryLimit(mem); err != nil || soft == 0 || soft > container*9/10 {
		t.Errorf("PASSERELLE_MEMORY_LIMIT=%s against a container limit of %s: want a size at most 90%% of it (%v)", mem, limit, err)
	}

	// Service: named passerelle (the alerts' job label through the ServiceMonitor), on the pods.
	svc := one(t, objs, "Service")
	if name := str(svc, "metadata", "name"); name != "passerelle" {
		t.Errorf("Service %q: the ServiceMonitor makes its name the job label, and the alerts want job=\"passerelle\"", name)
	}
	if sel := strMap(svc, "spec", "selector"); !selects(sel, d.podLabels) {
		t.Errorf("Service selector %v does not match the pod labels %v", sel, d.podLabels)
	}
	svcPorts := map[string]bool{}
	for _, p := range list(svc, "spec", "ports") {
		svcPorts[str(p, "name")] = true
		if tp := portOf(get(p, "targetPort")); tp == 0 || tp != get(p, "port") {
			t.Errorf("Service port %s: targetPort %v is not a container port of the same number", str(p, "name"), get(p, "targetPort"))
		}
	}

	pdb := one(t, objs, "PodDisruptionBudget")
	if sel := strMap(pdb, "spec", "selector", "matchLabels"); !selects(sel, d.podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not match the pod labels %v", sel, d.podLabels)
	}

	// NetworkPolicy: webhooks open, the admin port to pods of this namespace only.
	np := one(t, objs, "NetworkPolicy")
	if sel := strMap(np, "spec", "podSelector", "matchLabels"); !selects(sel, d.podLabels) {
		t.Errorf("NetworkPolicy podSelector %v does not match the pod labels %v", sel, d.podLabels)
	}
	if types := list(np, "spec", "policyTypes"); !slices.Contains(types, any("Ingress")) {
		t.Errorf("NetworkPolicy policyTypes %v: want Ingress", types)
	}
	allowed := map[int][]any{} // port → the from clauses that open it (nil: from anywhere)
	for _, rule := range list(np, "spec", "ingress") {
		ports := list(rule, "ports")
		if len(ports) == 0 {
			t.Errorf("NetworkPolicy ingress rule %v opens every port", rule)
		}
		for _, p := range ports {
			n := portOf(get(p, "port"))
			if n == 0 {
				t.Errorf("NetworkPolicy port %v is not a container port", get(p, "port"))
			}
			from := list(rule, "from")
			if len(from) == 0 {
				from = []any{nil}
			}
			allowed[n] = append(allowed[n], from...)
		}
	}
	if _, ok := allowed[8080]; !ok {
		t.Error("NetworkPolicy does not open the webhook port 8080")
	}
	if len(allowed[9090]) == 0 {
		t.Error("NetworkPolicy does not open the admin port 9090 to Prometheus in the namespace")
	}
	for _, f := range allowed[9090] {
		peer, _ := f.(obj)
		if peer == nil || get(peer, "podSelector") == nil || get(peer, "namespaceSelector") != nil || get(peer, "ipBlock") != nil {
			t.Errorf("NetworkPolicy opens the admin port 9090 to %v: only pods of the namespace (a podSelector alone) may reach it", f)
		}
	}

	// Prometheus Operator objects.
	sm := one(t, objs, "ServiceMonitor")
	if sel := strMap(sm, "spec", "selector", "matchLabels"); !selects(sel, strMap(svc, "metadata", "labels")) {
		t.Errorf("ServiceMonitor selector %v does not match the Service's labels", sel)
	}
	for _, e := range list(sm, "spec", "endpoints") {
		if p := str(e, "port"); !svcPorts[p] || d.ports[p] != 9090 || str(e, "path") != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %v: want the Service's admin port and /metrics", e)
		}
	}
	one(t, objs, "PrometheusRule")
	return d
}

func TestKubernetesBase(t *testing.T) {
	d := checkDaemon(t, k8sBase)
	if n := get(d.deploy, "spec", "replicas"); n != 1 {
		t.Errorf("base replicas %v, want 1 (the embedded broker and SQLite store are one process's)", n)
	}
	if s := str(d.deploy, "spec", "strategy", "type"); s != "Recreate" {
		t.Errorf("base strategy %q, want Recreate (two pods must not open one data volume)", s)
	}
	if _, ok := d.config["PASSERELLE_NATS_URL"]; ok {
		t.Error("base sets PASSERELLE_NATS_URL: it runs the embedded broker")
	}
	pvc := one(t, d.objs, "PersistentVolumeClaim")
	data := d.volumes[d.mounts[d.config["PASSERELLE_DATA_DIR"]]]
	if claim := str(data, "persistentVolumeClaim", "claimName"); claim == "" || claim != str(pvc, "metadata", "name") {
		t.Errorf("the data directory's volume %v is not the PersistentVolumeClaim %s", data, str(pvc, "metadata", "name"))
	}
	// The base's secrets are empty files: an empty value turns its module off, and nothing real is
	// ever committed.
	for k, v := range d.secret {
		if len(v) != 0 {
			t.Errorf("base Secret key %s is not empty: real secrets belong in an overlay of your own, never in the repository", k)
		}
	}
	for name := range d.fileEnv {
		if strings.HasPrefix(name, "PASSERELLE_NATS_URL") || strings.HasPrefix(name, "PASSERELLE_STORE_DSN") {
			t.Errorf("base sets %s: it is the embedded mode", name)
		}
	}
}

func TestKubernetesScaleOut(t *testing.T) {
	d := checkDaemon(t, k8sScaleOut)
	if n := get(d.deploy, "spec", "replicas"); n != 3 {
		t.Errorf("scale-out replicas %v, want 3", n)
	}
	if s := str(d.deploy, "spec", "strategy", "type"); s != "RollingUpdate" {
		t.Errorf("scale-out strategy %q, want RollingUpdate", s)
	}
	if len(byKind(d.objs, "PersistentVolumeClaim")) != 0 {
		t.Error("scale-out keeps a PersistentVolumeClaim")
	}
	for name, v := range d.volumes {
		if get(v, "persistentVolumeClaim") != nil {
			t.Errorf("scale-out volume %s is still a PersistentVolumeClaim", name)
		}
	}
	// External broker and PostgreSQL, from the Secret; placeholders that cannot connect.
	for name, scheme := range map[string]string{"PASSERELLE_NATS_URL_FILE": "nats://", "PASSERELLE_STORE_DSN_FILE": "postgres://"} {
		p, ok := d.fileEnv[name]
		if !ok {
			t.Errorf("scale-out does not set %s", name)
			continue
		}
		v := strings.TrimSpace(string(d.secret[path.Base(p)]))
		if !strings.HasPrefix(v, scheme) {
			t.Errorf("%s: the Secret's %s does not start with %s", name, path.Base(p), scheme)
		}
		if !strings.Contains(v, ".invalid") {
			t.Errorf("%s: the committed %s is not a placeholder on .invalid", name, path.Base(p))
		}
	}
}

// TestKubernetesSchemas validates the rendered native objects against the Kubernetes API
// schemas, offline, with kubectl-validate (its schemas are built in). The Prometheus Operator's
// ServiceMonitor and PrometheusRule are left out: their CRDs are not to be had offline (their
// structure is checked by TestKubernetesBase). Without the tool it skips, and fails under CI=true.
func TestKubernetesSchemas(t *testing.T) {
	tool, err := filepath.Abs("../bin/kubectl-validate")
	if err == nil {
		_, err = os.Stat(tool)
	}
	if err != nil {
		if tool, err = exec.LookPath("kubectl-validate"); err != nil {
			const msg = "kubectl-validate not found: make kubeconform installs it in bin/"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	for _, dir := range []string{k8sBase, k8sScaleOut} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, rendered := render(t, dir)
			out := t.TempDir()
			n := 0
			// The documents as kustomize wrote them: re-encoding could change a value (yaml.v3
			// folds long base64 strings).
			for _, b := range regexp.MustCompile(`(?m)^---[ \t]*\n`).Split(string(rendered), -1) {
				var o obj
				if err := yaml.Unmarshal([]byte(b), &o); err != nil {
					t.Fatalf("rendered %s: %v", dir, err)
				}
				if o == nil || strings.HasPrefix(str(o, "apiVersion"), "monitoring.coreos.com/") {
					continue
				}
				n++
				name := fmt.Sprintf("%02d-%s-%s.yaml", n, strings.ToLower(str(o, "kind")), str(o, "metadata", "name"))
				if err := os.WriteFile(filepath.Join(out, name), []byte(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if n < 6 {
				t.Fatalf("%d native objects rendered, want at least 6", n)
			}
			runTool(t, tool, "--version", kubeVersion, out)
		})
	}
}

// kubeVersion is the newest Kubernetes release whose schemas the pinned kubectl-validate has
// built in (Makefile: KUBECTL_VALIDATE_VERSION).
const kubeVersion = "1.30"
