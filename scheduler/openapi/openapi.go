// Package openapi embeds the OpenAPI 3.1 document of the scheduler's HTTP API and status page.
package openapi

import _ "embed"

// Document is the OpenAPI 3.1 document of every route the scheduler serves: its API (scheduler.API.Handler)
// and its status page (scheduler/ui.Wrap). The scheduler serves it at GET /openapi.json without a token;
// scheduler/openapitest validates the tests' requests and responses against it.
//
//go:embed openapi.json
var Document []byte
