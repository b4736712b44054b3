package scheduler

import (
	_ "embed"
	"net/http"
)

// OpenAPIDocument is the OpenAPI 3.1 document of every route of API.Handler, served at GET /openapi.json
// without a token. The API tests validate every response they produce against it (openapi_test.go).
//
//go:embed openapi.json
var OpenAPIDocument []byte

// serveOpenAPI is GET /openapi.json.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(OpenAPIDocument)
}
