package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"rotor.sh/rotor/cli"
)

const (
	chartDir      = "helm/rotor"
	exampleValues = "helm/rotor/ci/gateway-values.yaml"
	// gatewayManifest is rendered from the chart with exampleValues by
	// `make k8s-manifests`; sidecarManifest is written by hand.
	gatewayManifest = "../configs/kubernetes/gateway.yaml"
	sidecarManifest = "../configs/kubernetes/sidecar-deployment.yaml"
	releaseName     = "rotor"
	namespace       = "rotor"
	nonRootUID      = 65532
	// canary is a plaintext value tests try to pass through values.
	canary = "CANARY-3c1f0e9a7b5d"
)

// helm returns the helm binary: $ROTOR_HELM, the Makefile's pinned
// bin/tools/helm, or helm on PATH. Under CI it must exist.
func helm(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ROTOR_HELM"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../bin/tools/helm"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm not found: make helm installs the pinned version into bin/tools")
	}
	t.Skip("helm not found: make helm installs the pinned version into bin/tools")
	return ""
}

// runHelm runs helm with a private home so no user config, plugin or
// repository of this machine changes the result.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func template(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runHelm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatalf("helm template %q: %v\n%s", args, err, errOut)
	}
	return out
}

// object is one rendered manifest (an alias: yaml.v3 decodes nested
// mappings into the type of the outer one).
type object = map[string]any

func parse(t *testing.T, manifests string) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

// get walks a path of map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func kinds(objs []object) map[string][]object {
	m := map[string][]object{}
	for _, o := range objs {
		k, _ := o["kind"].(string)
		m[k] = append(m[k], o)
	}
	return m
}

func one(t *testing.T, objs []object, kind string) object {
	t.Helper()
	k := kinds(objs)[kind]
	if len(k) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(k), kind)
	}
	return k[0]
}

func envOf(c any) map[string]map[string]any {
	m := map[string]map[string]any{}
	l, _ := get(c, "env").([]any)
	for _, e := range l {
		em, _ := e.(map[string]any)
		name, _ := em["name"].(string)
		m[name] = em
	}
	return m
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChartLint(t *testing.T) {
	for _, args := range [][]string{{}, {"-f", exampleValues}} {
		if out, errOut, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, args...)...); err != nil {
			t.Fatalf("helm lint %q: %v\n%s%s", args, err, out, errOut)
		}
	}
}

// TestChartGateway checks every promise of the chart, with the default
// values and with the example file.
func TestChartGateway(t *testing.T) {
	for name, args := range map[string][]string{"default": nil, "example": {"-f", exampleValues}} {
		t.Run(name, func(t *testing.T) {
			objs := parse(t, template(t, args...))
			byKind := kinds(objs)
			if s := byKind["Secret"]; len(s) != 0 {
				t.Fatalf("the chart renders %d Secrets: secrets must come from existing ones only", len(s))
			}
			dep := one(t, objs, "Deployment")
			pod := get(dep, "spec", "template", "spec")
			podLabels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)

			if get(pod, "securityContext", "runAsNonRoot") != true || get(pod, "securityContext", "runAsUser") != nonRootUID {
				t.Fatalf("pod securityContext %v: want runAsNonRoot and user %d", get(pod, "securityContext"), nonRootUID)
			}
			if get(pod, "automountServiceAccountToken") != false {
				t.Fatal("the service account token is mounted")
			}
			containers := get(pod, "containers").([]any)
			if len(containers) != 1 {
				t.Fatalf("%d containers", len(containers))
			}
			c := containers[0]
			sc := get(c, "securityContext")
			if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false ||
				get(sc, "runAsNonRoot") != true || fmt.Sprint(get(sc, "capabilities", "drop")) != "[ALL]" {
				t.Fatalf("container securityContext %v", sc)
			}
			if get(c, "resources", "requests", "cpu") == nil || get(c, "resources", "requests", "memory") == nil {
				t.Fatalf("resources %v: want cpu and memory requests", get(c, "resources"))
			}

			// Probes on the ops listener, whose port is Rotor's default.
			opsPort := port(t, cli.DefaultOpsAddr)
			var portNames []string
			for _, p := range get(c, "ports").([]any) {
				portNames = append(portNames, get(p, "name").(string))
				if get(p, "name") == "ops" && get(p, "containerPort") != opsPort {
					t.Fatalf("ops containerPort %v, rotor's default ops port %d", get(p, "containerPort"), opsPort)
				}
			}
			for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
				if get(c, probe, "httpGet", "path") != path || get(c, probe, "httpGet", "port") != "ops" {
					t.Fatalf("%s %v: want %s on the ops port", probe, get(c, probe), path)
				}
			}

			env := envOf(c)
			for _, secret := range []string{"ROTOR_MASTER_KEY", "ROTOR_POSTGRES_DSN"} {
				e := env[secret]
				if e == nil || e["value"] != nil || get(e, "valueFrom", "secretKeyRef", "name") == nil || get(e, "valueFrom", "secretKeyRef", "key") == nil {
					t.Fatalf("%s = %v: want it from an existing Secret only", secret, e)
				}
			}
			for k, want := range map[string]string{
				"ROTOR_STORAGE": "postgres", "ROTOR_PROXY_MODE": "gateway",
				"ROTOR_OPS_ADDR":       "0.0.0.0:" + strconv.Itoa(opsPort),
				"ROTOR_PROXY_TLS_CERT": "/etc/rotor/tls/tls.crt", "ROTOR_PROXY_TLS_KEY": "/etc/rotor/tls/tls.key",
			} {
				if env[k] == nil || env[k]["value"] != want {
					t.Fatalf("%s = %v, want %q", k, env[k], want)
				}
			}
			// A read-only root needs writable /tmp (the plugin's socket) and /data.
			var mounts []string
			for _, m := range get(c, "volumeMounts").([]any) {
				mounts = append(mounts, get(m, "mountPath").(string))
			}
			for _, want := range []string{"/tmp", "/data", "/etc/rotor/tls"} {
				if !slices.Contains(mounts, want) {
					t.Fatalf("volumeMounts %q lack %s", mounts, want)
				}
			}

			// The Service exposes the TLS proxy and the API to the pods.
			svc := one(t, objs, "Service")
			var svcPorts []string
			for _, p := range get(svc, "spec", "ports").([]any) {
				svcPorts = append(svcPorts, get(p, "name").(string))
				if !slices.Contains(portNames, get(p, "targetPort").(string)) {
					t.Fatalf("service port %v targets no container port", p)
				}
			}
			if !slices.Contains(svcPorts, "proxy") || !slices.Contains(svcPorts, "api") {
				t.Fatalf("service ports %q: want proxy and api", svcPorts)
			}
			selects(t, "Service", get(svc, "spec", "selector"), podLabels)

			pdb := one(t, objs, "PodDisruptionBudget")
			if get(pdb, "spec", "minAvailable") == nil {
				t.Fatalf("PodDisruptionBudget %v without minAvailable", get(pdb, "spec"))
			}
			selects(t, "PodDisruptionBudget", get(pdb, "spec", "selector", "matchLabels"), podLabels)

			sm := byKind["ServiceMonitor"]
			switch {
			case name == "default" && len(sm) != 0:
				t.Fatal("ServiceMonitor rendered though disabled by default")
			case name == "example":
				if len(sm) != 1 || get(sm[0], "spec", "endpoints", 0, "port") != "ops" {
					t.Fatalf("ServiceMonitor %v: want one scraping the ops port", sm)
				}
				selects(t, "ServiceMonitor", get(sm[0], "spec", "selector", "matchLabels"), get(svc, "metadata", "labels").(map[string]any))
			}
		})
	}
}

// selects fails unless every label of sel is on target.
func selects(t *testing.T, what string, sel any, target map[string]any) {
	t.Helper()
	m, _ := sel.(map[string]any)
	if len(m) == 0 {
		t.Fatalf("%s selects everything", what)
	}
	for k, v := range m {
		if target[k] != v {
			t.Fatalf("%s selector %v does not match %v", what, m, target)
		}
	}
}

// TestChartRefusesPlaintextSecrets attacks the promise that the master
// key, DSN and operator key never sit in values: each attempt must fail to
// render, and the value must appear nowhere in helm's output.
func TestChartRefusesPlaintextSecrets(t *testing.T) {
	for name, args := range map[string][]string{
		"master key as a string":      {"--set", "masterKey=" + canary},
		"master key value field":      {"--set", "masterKey.value=" + canary},
		"dsn field":                   {"--set", "postgres.dsn=postgres://rotor:" + canary + "@db:5432/rotor"},
		"bootstrap key value":         {"--set", "bootstrapAPIKey.value=" + canary},
		"top-level masterKeyValue":    {"--set", "masterKeyValue=" + canary},
		"master key through extraEnv": {"--set-json", `extraEnv=[{"name":"ROTOR_MASTER_KEY","value":"` + canary + `"}]`},
		"dsn through extraEnv":        {"--set-json", `extraEnv=[{"name":"ROTOR_POSTGRES_DSN","value":"postgres://x:` + canary + `@db/r"}]`},
		"dispatch token in extraEnv":  {"--set-json", `extraEnv=[{"name":"ROTOR_DISPATCH_TOKEN","value":"` + canary + `"}]`},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, err := runHelm(t, append([]string{"template", releaseName, chartDir, "--namespace", namespace}, args...)...)
			if strings.Contains(out, canary) || strings.Contains(errOut, canary) {
				t.Errorf("the plaintext value reached helm's output:\n%s%s", out, errOut)
			}
			if err == nil {
				t.Fatalf("rendered with a plaintext secret in values (%q)", args)
			}
		})
	}
	// extraEnv from a Secret is fine.
	objs := parse(t, template(t, "--set-json", `extraEnv=[{"name":"ROTOR_DISPATCH_TOKEN","valueFrom":{"secretKeyRef":{"name":"rotor","key":"dispatch-token"}}}]`))
	if envOf(get(one(t, objs, "Deployment"), "spec", "template", "spec", "containers", 0))["ROTOR_DISPATCH_TOKEN"] == nil {
		t.Fatal("extraEnv from a Secret was dropped")
	}
	// Missing Secret names are refused with the field named.
	for _, field := range []string{"masterKey.existingSecret", "postgres.existingSecret", "proxyTLS.existingSecret"} {
		_, errOut, err := runHelm(t, "template", releaseName, chartDir, "--set", field+"=")
		if err == nil || !strings.Contains(errOut, field) {
			t.Fatalf("empty %s: err %v, stderr %s", field, err, errOut)
		}
	}
}

// TestChartPortsMatchRotorDefaults keeps the chart's listen ports on the
// binary's defaults, so that a change of a default shows up here.
func TestChartPortsMatchRotorDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Ports struct{ API, Proxy, Ops int }
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2]int{
		"api":   {v.Ports.API, port(t, cli.DefaultAPIAddr)},
		"proxy": {v.Ports.Proxy, port(t, cli.DefaultProxyAddr)},
		"ops":   {v.Ports.Ops, port(t, cli.DefaultOpsAddr)},
	} {
		if pair[0] != pair[1] {
			t.Errorf("values.yaml ports.%s is %d, rotor's default %d", name, pair[0], pair[1])
		}
	}
}

// TestKubernetesConfigsMatchChart: configs/kubernetes/gateway.yaml is the
// chart rendered with the example values (make k8s-manifests), and the
// hand-written sidecar example uses the chart's image, Secret keys, ops
// port, probes and security context.
func TestKubernetesConfigsMatchChart(t *testing.T) {
	committed, err := os.ReadFile(gatewayManifest)
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(committed), "\n---\n")
	if !ok {
		t.Fatalf("%s: no header", gatewayManifest)
	}
	if want := template(t, "-f", exampleValues); "---\n"+body != want {
		t.Fatalf("%s is stale: run make k8s-manifests", gatewayManifest)
	}

	chart := parse(t, template(t))
	cc := get(one(t, chart, "Deployment"), "spec", "template", "spec", "containers", 0)
	b, err := os.ReadFile(sidecarManifest)
	if err != nil {
		t.Fatal(err)
	}
	dep := one(t, parse(t, string(b)), "Deployment")
	var sc any
	for _, c := range get(dep, "spec", "template", "spec", "containers").([]any) {
		if get(c, "name") == "rotor" {
			sc = c
		}
	}
	if sc == nil {
		t.Fatalf("%s: no rotor container", sidecarManifest)
	}
	image := get(sc, "image").(string)
	chartImage := get(cc, "image").(string)
	if strings.Split(image, ":")[0] != strings.Split(chartImage, ":")[0] {
		t.Errorf("sidecar image %s, chart image %s", image, chartImage)
	}
	for _, key := range []string{"ROTOR_MASTER_KEY", "ROTOR_POSTGRES_DSN"} {
		if fmt.Sprint(get(envOf(sc)[key], "valueFrom", "secretKeyRef", "key")) != fmt.Sprint(get(envOf(cc)[key], "valueFrom", "secretKeyRef", "key")) {
			t.Errorf("%s: sidecar takes key %v, chart %v", key, get(envOf(sc)[key], "valueFrom"), get(envOf(cc)[key], "valueFrom"))
		}
	}
	for _, field := range []string{"securityContext", "readinessProbe", "livenessProbe"} {
		chartField := get(cc, field)
		if field != "securityContext" {
			chartField = get(cc, field, "httpGet")
			if got := get(sc, field, "httpGet"); fmt.Sprint(got) != fmt.Sprint(chartField) {
				t.Errorf("%s: sidecar %v, chart %v", field, got, chartField)
			}
			continue
		}
		if got := get(sc, field); fmt.Sprint(got) != fmt.Sprint(chartField) {
			t.Errorf("securityContext: sidecar %v, chart %v", got, chartField)
		}
	}
	for _, p := range get(sc, "ports").([]any) {
		if get(p, "name") == "ops" && get(p, "containerPort") != port(t, cli.DefaultOpsAddr) {
			t.Errorf("sidecar ops port %v, rotor's default %s", get(p, "containerPort"), cli.DefaultOpsAddr)
		}
	}
}

// TestChartImage: a tag of digits only (a short commit hash can be one)
// stays a tag, and a digest pins the image.
func TestChartImage(t *testing.T) {
	for want, args := range map[string][]string{
		"rotor:8310907": {"--set", "image.tag=8310907"},
		"rotor@sha256:" + strings.Repeat("ab", 32): {"--set", "image.digest=sha256:" + strings.Repeat("ab", 32)},
	} {
		dep := one(t, parse(t, template(t, args...)), "Deployment")
		if got := get(dep, "spec", "template", "spec", "containers", 0, "image"); got != want {
			t.Errorf("%q: image %v, want %s", args, got, want)
		}
	}
	if _, _, err := runHelm(t, "template", releaseName, chartDir, "--set", "image.digest=latest"); err == nil {
		t.Error("a digest that is not sha256:<hex> was accepted")
	}
}
