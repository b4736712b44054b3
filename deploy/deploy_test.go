package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vantage-edge/vantage/router/proxysync"
)

// vantageBinary builds ./cmd/vantage once for the package's tests.
var vantageBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vantage-deploy-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vantage")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/vantage").CombinedOutput()
	if err != nil {
		return "", errors.New("go build ./cmd/vantage: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)`)

// flagsOf returns the flags `vantage help sub` documents.
func flagsOf(t *testing.T, sub string) []string {
	t.Helper()
	bin, err := vantageBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(bin, "help", sub).CombinedOutput() // help exits 0; the text is what matters
	var flags []string
	for _, l := range strings.Split(string(out), "\n") {
		if m := flagLine.FindStringSubmatch(l); m != nil {
			flags = append(flags, m[1])
		}
	}
	if len(flags) == 0 {
		t.Fatalf("vantage help %s lists no flags:\n%s", sub, out)
	}
	return flags
}

// checkArgs checks that args start with a known subcommand and use only flags it has.
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no subcommand", where)
		return
	}
	sub := args[0]
	if !slices.Contains([]string{"probed", "scheduler", "router"}, sub) {
		t.Errorf("%s: subcommand %q is not a daemon", where, sub)
		return
	}
	known := flagsOf(t, sub)
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !slices.Contains(known, name) {
			t.Errorf("%s: vantage %s has no flag --%s (it has %v)", where, sub, name, known)
		}
	}
}

// envFile parses vantage.env: every variable must be documented by a comment right above it.
func envFile(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("systemd/vantage.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	prevComment := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "":
			prevComment = false
		case strings.HasPrefix(l, "#"):
			prevComment = true
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || !regexp.MustCompile(`^VANTAGE_[A-Z_]+$`).MatchString(k) {
				t.Errorf("vantage.env:%d: %q is not NAME=value", n, l)
			}
			if !prevComment {
				t.Errorf("vantage.env:%d: %s is not documented by a comment above it", n, k)
			}
			vars[k] = v
		}
	}
	return vars
}

func TestSystemdUnits(t *testing.T) {
	vars := envFile(t)
	used := map[string]bool{"VANTAGE_REDIS_PASSWORD": true} // read from the environment by the daemons
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 3 {
		t.Fatalf("want the probed, scheduler and router units, have %v", units)
	}
	bin, err := vantageBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		sections := parseUnit(t, u, data)
		svc := sections["Service"]
		for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "EnvironmentFile=/etc/vantage/vantage.env"} {
			if !slices.Contains(svc, want) {
				t.Errorf("%s: [Service] lacks %s", u, want)
			}
		}
		capRaw := slices.Contains(svc, "CapabilityBoundingSet=CAP_NET_RAW")
		if isProbed := strings.Contains(u, "probed"); capRaw != isProbed || (!isProbed && !slices.Contains(svc, "CapabilityBoundingSet=")) {
			t.Errorf("%s: CAP_NET_RAW only for probed (ICMP), an empty bounding set elsewhere", u)
		}
		var exec string
		for _, l := range svc {
			if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
				exec = v
			}
		}
		fields := strings.Fields(exec)
		if len(fields) < 2 || fields[0] != "/usr/local/bin/vantage" {
			t.Fatalf("%s: ExecStart %q does not run /usr/local/bin/vantage", u, exec)
		}
		checkArgs(t, u, fields[1:])
		for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(exec, -1) {
			used[m[1]] = true
			if _, ok := vars[m[1]]; !ok {
				t.Errorf("%s: ${%s} is not in vantage.env", u, m[1])
			}
		}
		verifyUnit(t, u, bytes.ReplaceAll(data, []byte("/usr/local/bin/vantage"), []byte(bin)))
	}
	for k := range vars {
		if !used[k] {
			t.Errorf("vantage.env: %s is used by no unit", k)
		}
	}
}

// parseUnit reads an INI-style unit into sections of "Key=value" lines.
func parseUnit(t *testing.T, name string, data []byte) map[string][]string {
	t.Helper()
	sections := map[string][]string{}
	cur := ""
	for n, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			cur = l[1 : len(l)-1]
		case cur == "" || !strings.Contains(l, "="):
			t.Errorf("%s:%d: %q is outside a section or not Key=value", name, n+1, l)
		default:
			sections[cur] = append(sections[cur], l)
		}
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if len(sections[s]) == 0 {
			t.Errorf("%s: no [%s] section", name, s)
		}
	}
	return sections
}

// verifyUnit runs systemd-analyze verify when it is installed: any complaint fails the test (it exits 0 on
// unknown keys and bad values, so its output is what counts).
func verifyUnit(t *testing.T, name string, data []byte) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: %s checked by the parser only", name)
		return
	}
	p := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
	}
}

// k8sDoc is the part of a Kubernetes object the test reads.
type k8sDoc struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Spec struct {
				Containers []struct {
					Name            string                  `yaml:"name"`
					Args            []string                `yaml:"args"`
					Env             []struct{ Name string } `yaml:"env"`
					SecurityContext struct {
						Capabilities struct {
							Drop []string `yaml:"drop"`
							Add  []string `yaml:"add"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type kustomization struct {
	Resources []string `yaml:"resources"`
	Patches   []struct {
		Target struct{ Kind, Name string } `yaml:"target"`
		Patch  string                      `yaml:"patch"`
	} `yaml:"patches"`
}

func readDocs(t *testing.T, path string) []k8sDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []k8sDoc
	for {
		var d k8sDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d.APIVersion == "" || d.Kind == "" || d.Metadata.Name == "" {
			t.Errorf("%s: a document lacks apiVersion, kind or metadata.name: %+v", path, d)
		}
		docs = append(docs, d)
	}
}

func TestKubernetesManifests(t *testing.T) {
	deployments := map[string]k8sDoc{}
	var walk func(dir string)
	seen := map[string]bool{}
	walk = func(dir string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kustomization
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", dir, err)
		}
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			if st, err := os.Stat(p); err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
			} else if st.IsDir() {
				walk(p)
			} else {
				for _, d := range readDocs(t, p) {
					if d.Kind == "Deployment" {
						deployments[d.Metadata.Name] = d
					}
				}
			}
		}
		for _, p := range k.Patches {
			d, ok := deployments[p.Target.Name]
			if !ok {
				t.Errorf("%s: patch targets %s %s, which no resource defines", dir, p.Target.Kind, p.Target.Name)
				continue
			}
			checkPatch(t, dir, d, p.Patch)
		}
	}
	walk("kubernetes/base")
	walk("kubernetes/pop")
	overlays, _ := filepath.Glob("kubernetes/overlays/*")
	if len(overlays) < 2 {
		t.Fatalf("want an overlay per PoP, have %v", overlays)
	}
	for _, o := range overlays {
		walk(o)
	}
	if d := deployments["vantage-scheduler"]; d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Error("the scheduler runs as 2 replicas (one leader by the Redis lease)")
	}
	for _, name := range []string{"vantage-scheduler", "vantage-router", "vantage-probed"} {
		d, ok := deployments[name]
		if !ok {
			t.Errorf("no Deployment %s", name)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		checkArgs(t, name, c.Args)
		if !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") {
			t.Errorf("%s: capabilities are not dropped", name)
		}
		if add := c.SecurityContext.Capabilities.Add; (name == "vantage-probed") != slices.Equal(add, []string{"NET_RAW"}) {
			t.Errorf("%s: adds capabilities %v; only probed adds NET_RAW", name, add)
		}
	}
}

// checkPatch checks that a PoP overlay's JSON patch replaces the env variables it means to.
func checkPatch(t *testing.T, dir string, d k8sDoc, patch string) {
	t.Helper()
	var ops []struct{ Op, Path string }
	if err := yaml.Unmarshal([]byte(patch), &ops); err != nil {
		t.Errorf("%s: patch for %s: %v", dir, d.Metadata.Name, err)
		return
	}
	env := d.Spec.Template.Spec.Containers[0].Env
	want := map[string][]string{"vantage-probed": {"VANTAGE_POP", "VANTAGE_SOURCE"}, "vantage-router": {"VANTAGE_INGRESS"}}
	for _, op := range ops {
		var i int
		if n, _ := fmt.Sscanf(op.Path, "/spec/template/spec/containers/0/env/%d/value", &i); n != 1 {
			continue
		}
		if i >= len(env) || !slices.Contains(want[d.Metadata.Name], env[i].Name) {
			t.Errorf("%s: patch %s of %s does not hit one of %v", dir, op.Path, d.Metadata.Name, want[d.Metadata.Name])
		}
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, users, entry []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		case "ENTRYPOINT":
			entry = append(entry, l)
		}
	}
	// Built offline from a binary built beforehand (TestImage): nothing to pull.
	if len(froms) != 1 || froms[0] != "scratch" {
		t.Errorf("want one stage FROM scratch (it builds offline), have FROM %v", froms)
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("the image must run as a non-root user, USER %v", users)
	}
	if len(entry) != 1 || !strings.Contains(entry[0], "/usr/local/bin/vantage") {
		t.Errorf("ENTRYPOINT %v does not run vantage", entry)
	}
}

// TestProxyConfigsAccepted checks that the shipped deploy/nginx/nginx.conf and deploy/haproxy/haproxy.cfg, as
// whole files, are accepted by the proxies themselves (`nginx -t`, `haproxy -c`), with their /etc paths moved
// to a scratch directory holding the table `vantage router` writes before its first snapshot (EnsureFile).
// router/proxysync's differential test runs their rules; this one catches an error in the files around them.
func TestProxyConfigsAccepted(t *testing.T) {
	for _, c := range []struct {
		proxy, conf, etc, table string
		ensure                  func(path string) error
		check                   func(dir, conf string) []string
	}{
		{"nginx", "nginx/nginx.conf", "/etc/nginx/vantage/", "tables.conf",
			func(p string) error { return (&proxysync.Nginx{MapFile: p}).EnsureFile("EWR") },
			func(dir, conf string) []string {
				return []string{"nginx", "-t", "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "pid " + filepath.Join(dir, "nginx.pid") + ";"}
			}},
		{"haproxy", "haproxy/haproxy.cfg", "/etc/haproxy/", "vantage.map",
			func(p string) error { return (&proxysync.HAProxy{MapFile: p}).EnsureFile("EWR") },
			func(dir, conf string) []string { return []string{"haproxy", "-c", "-f", conf} }},
	} {
		t.Run(c.proxy, func(t *testing.T) {
			if _, err := exec.LookPath(c.proxy); err != nil {
				t.Skipf("%s not installed (Debian package %s; .ci/deps.sh installs it)", c.proxy, c.proxy)
			}
			dir := t.TempDir()
			etc := dir + "/"
			for _, f := range []string{"vantage.conf", "vantage-proxy.conf", "vantage.lua"} {
				b, err := os.ReadFile(filepath.Join(c.proxy, f))
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), bytes.ReplaceAll(b, []byte(c.etc), []byte(etc)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.ensure(filepath.Join(dir, c.table)); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(c.conf)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.ReplaceAll(string(b), c.etc, etc)
			s = strings.ReplaceAll(s, "/run/haproxy/admin.sock", filepath.Join(dir, "admin.sock"))
			s = strings.ReplaceAll(s, " group vantage", "") // the group need not exist here
			conf := filepath.Join(dir, filepath.Base(c.conf))
			if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			argv := c.check(dir, conf)
			if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s refuses the shipped %s: %v\n%s", c.proxy, c.conf, err, out)
			}
		})
	}
}
