package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// kustomizations returns every directory under root holding a kustomization.yaml: the base, the PoP base and
// each PoP overlay.
func kustomizations(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// buildAndValidate builds dir with kustomize (as `kubectl apply -k` does) and checks every object it makes
// against the Kubernetes API: strict decoding into the API's Go types (unknown or duplicate fields, wrong
// types), the OpenAPI schema client-go embeds (structured-merge-diff), names, and what the API server's
// validation would refuse for a Deployment (selector not matching the pod labels, $(VAR) references to
// variables the container does not have; applied maps the ConfigMaps applied before, the base's, by name). It
// returns the objects, decoded, and the ConfigMaps of the build.
func buildAndValidate(dir string, applied map[string]map[string]string) ([]runtime.Object, map[string]map[string]string, []string) {
	var problems []string
	fail := func(format string, a ...any) { problems = append(problems, dir+": "+sprintf(format, a...)) }
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		fail("kustomize build: %v", err)
		return nil, nil, problems
	}
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	types := applyconfigurations.NewTypeConverter(scheme.Scheme)
	var objs []runtime.Object
	configMaps := map[string]map[string]string{}
	own := map[string]map[string]string{}
	for k, v := range applied {
		configMaps[k] = v
	}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			fail("%s: %v", r.CurId(), err)
			continue
		}
		obj, gvk, err := strict.Decode(y, nil, nil)
		if err != nil {
			fail("%s %s: %v", r.GetKind(), r.GetName(), err)
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yamlToUnstructured(y, u); err != nil {
			fail("%s %s: %v", gvk.Kind, r.GetName(), err)
			continue
		}
		if _, err := types.ObjectToTyped(u); err != nil {
			fail("%s %s: against the OpenAPI schema: %v", gvk.Kind, r.GetName(), err)
		}
		for _, msg := range validation.IsDNS1123Subdomain(r.GetName()) {
			fail("%s name %q: %s", gvk.Kind, r.GetName(), msg)
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			configMaps[cm.Name], own[cm.Name] = cm.Data, cm.Data
		}
		objs = append(objs, obj)
	}
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		sel := d.Spec.Selector
		if sel == nil || len(sel.MatchLabels) == 0 {
			fail("Deployment %s: no selector", d.Name)
		} else if !labels.SelectorFromSet(sel.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
			fail("Deployment %s: selector %v does not match the pod labels %v", d.Name, sel.MatchLabels, d.Spec.Template.Labels)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Image == "" {
				fail("Deployment %s container %s: no image", d.Name, c.Name)
			}
			for _, p := range c.Ports {
				for _, msg := range validation.IsValidPortName(p.Name) {
					fail("Deployment %s port %q: %s", d.Name, p.Name, msg)
				}
			}
			vars := map[string]bool{}
			for _, e := range c.Env {
				vars[e.Name] = true
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef == nil {
					continue
				}
				for k := range configMaps[ef.ConfigMapRef.Name] {
					vars[k] = true
				}
			}
			for _, a := range slices.Concat(c.Command, c.Args) {
				for _, ref := range varRef.FindAllStringSubmatch(a, -1) {
					if !vars[ref[1]] {
						fail("Deployment %s container %s: argument %q refers to $(%s), which neither env nor a ConfigMap of this build defines",
							d.Name, c.Name, a, ref[1])
					}
				}
			}
		}
	}
	return objs, own, problems
}

// TestKustomizeBuild builds every kustomization under kubernetes/ with kustomize's own library and validates
// every object against the Kubernetes API schemas (see buildAndValidate). A PoP overlay must produce its
// PoP's two Deployments, with the suffix, the node selector and the PoP's code.
func TestKustomizeBuild(t *testing.T) {
	dirs := kustomizations(t, "kubernetes")
	if len(dirs) < 4 {
		t.Fatalf("want base, pop and two overlays, have %v", dirs)
	}
	base := baseConfigMaps(t)
	for _, dir := range dirs {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			objs, _, problems := buildAndValidate(dir, base)
			for _, p := range problems {
				t.Error(p)
			}
			if len(objs) == 0 {
				t.Fatal("the build made no object")
			}
			pop, isOverlay := strings.CutPrefix(dir, "kubernetes/overlays/")
			if !isOverlay {
				return
			}
			var names []string
			for _, o := range objs {
				d, ok := o.(*appsv1.Deployment)
				if !ok {
					continue
				}
				names = append(names, d.Name)
				if d.Spec.Template.Spec.NodeSelector["vantage.dev/pop"] != strings.ToUpper(pop) {
					t.Errorf("%s: node selector %v, want vantage.dev/pop=%s", d.Name, d.Spec.Template.Spec.NodeSelector, strings.ToUpper(pop))
				}
				if env := d.Spec.Template.Spec.Containers[0].Env; len(env) == 0 || env[0].Value != strings.ToUpper(pop) {
					t.Errorf("%s: first env %v, want the PoP's code %s", d.Name, env, strings.ToUpper(pop))
				}
			}
			slices.Sort(names)
			if want := []string{"vantage-probed-" + pop, "vantage-router-" + pop}; !slices.Equal(names, want) {
				t.Errorf("Deployments %v, want %v", names, want)
			}
		})
	}
}

// TestKustomizeValidationRefuses: the validation above refuses what the API server would, on copies of the
// PoP base broken one way each, so TestKustomizeBuild passing means something.
func TestKustomizeValidationRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown_field", "  replicas: 1\n", "  replica: 1\n", `unknown field "spec.replica"`},
		{"wrong_type", "  replicas: 1\n", "  replicas: one\n", "replicas"},
		{"selector_mismatch", "      app.kubernetes.io/name: vantage-probed\n  template:", "      app.kubernetes.io/name: other\n  template:", "does not match the pod labels"},
		{"undefined_variable", "--source=$(VANTAGE_SOURCE)", "--source=$(VANTAGE_SORCE)", "$(VANTAGE_SORCE)"},
		{"bad_port_name", "- name: metrics\n", "- name: Metrics_Port\n", `port "Metrics_Port"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"kustomization.yaml", "probed.yaml", "router.yaml"} {
				b, err := os.ReadFile(filepath.Join("kubernetes/pop", f))
				if err != nil {
					t.Fatal(err)
				}
				if f == "probed.yaml" {
					if !strings.Contains(string(b), tc.old) {
						t.Fatalf("probed.yaml lacks %q: update the test", tc.old)
					}
					b = []byte(strings.Replace(string(b), tc.old, tc.new, 1))
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, _, problems := buildAndValidate(dir, baseConfigMaps(t))
			joined := strings.Join(problems, "\n")
			if !strings.Contains(joined, tc.want) {
				t.Errorf("problems %q lack %q", joined, tc.want)
			}
		})
	}
}

// baseConfigMaps builds kubernetes/base, applied before any PoP (deploy/README.md), and returns its ConfigMaps.
func baseConfigMaps(t *testing.T) map[string]map[string]string {
	t.Helper()
	_, cms, problems := buildAndValidate("kubernetes/base", nil)
	if len(problems) > 0 || len(cms) == 0 {
		t.Fatalf("building kubernetes/base: ConfigMaps %v, problems %v", cms, problems)
	}
	return cms
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// yamlToUnstructured decodes one object's YAML into u.
func yamlToUnstructured(y []byte, u *unstructured.Unstructured) error {
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	return u.UnmarshalJSON(js)
}
