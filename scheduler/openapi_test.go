package scheduler

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/vantage-edge/vantage/scheduler/openapitest"
)

// TagStatusPage tags the document's operations that scheduler/ui serves, not Handler (ui's tests compare them
// with its routes).
const tagStatusPage = "status page"

// TestOpenAPIDocumentsEveryRoute compares Handler's route table with the document's operations (those not
// tagged "status page"), both ways.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	var served, documented []string
	for _, rt := range (&API{Telemetry: http.NotFoundHandler()}).routes() {
		served = append(served, rt.pattern)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !slices.Contains(op.Tags, tagStatusPage) {
				documented = append(documented, method+" "+path)
			}
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Errorf("routes served:\n%s\nroutes documented:\n%s", strings.Join(served, "\n"), strings.Join(documented, "\n"))
	}
}

// TestOpenAPIServed reads /openapi.json without a token.
func TestOpenAPIServed(t *testing.T) {
	hs := httptest.NewServer((&API{}).Handler())
	defer hs.Close()
	resp, err := openapitest.Client(t).Get(hs.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d, %v", resp.StatusCode, err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Paths["/v1/apps"] == nil {
		t.Errorf("GET /openapi.json: openapi %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}
