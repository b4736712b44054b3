package scheduler

import (
	"net/http"

	"github.com/vantage-edge/vantage/scheduler/openapi"
)

// OpenAPIDocument is the OpenAPI 3.1 document of every route of API.Handler (and of the status page that wraps
// it), served at GET /openapi.json without a token: openapi.Document.
var OpenAPIDocument = openapi.Document

// serveOpenAPI is GET /openapi.json.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapi.Document)
}
