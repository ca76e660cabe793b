package admin

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

type oaParam struct {
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
}

type oaOp struct {
	Scope       string                     `json:"x-scope"`
	Parameters  []oaParam                  `json:"parameters"`
	Security    *[]any                     `json:"security"`
	RequestBody *json.RawMessage           `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

type oaSchema struct {
	Type       string              `json:"type"`
	Properties map[string]oaSchema `json:"properties"`
	AllOf      []oaSchema          `json:"allOf"`
	Ref        string              `json:"$ref"`
}

type oaDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]oaOp            `json:"paths"`
	Components struct{ Schemas map[string]oaSchema } `json:"components"`
}

func loadSpec(t *testing.T) (oaDoc, []byte) {
	t.Helper()
	e := newEnv(t)
	r := e.do("GET", "/api/v1/openapi.json", "", nil)
	wantStatus(t, r, http.StatusOK)
	var doc oaDoc
	r.json(t, &doc)
	return doc, r.body
}

// TestOpenAPIMatchesRoutes walks the router's route table and the served description and fails
// on any disagreement: a route missing from the description or the other way round, path or
// query parameters, scope, security, the 401/403 responses, request bodies.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, raw := loadSpec(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	e := newEnv(t)
	seen := map[string]bool{}
	for _, rt := range e.srv.routes {
		path := strings.ReplaceAll(rt.pattern, "...", "")
		method := strings.ToLower(rt.method)
		key := rt.method + " " + path
		seen[key] = true
		op, ok := doc.Paths[path][method]
		if !ok {
			t.Errorf("%s: route not described", key)
			continue
		}
		wantScope := string(rt.scope)
		if wantScope == "" {
			wantScope = "public"
		}
		if op.Scope != wantScope {
			t.Errorf("%s: x-scope %q, route needs %q", key, op.Scope, wantScope)
		}
		if public := rt.scope == ""; public != (op.Security != nil && len(*op.Security) == 0) {
			t.Errorf("%s: public=%v but security %v", key, public, op.Security)
		}
		var query, pathParams []string
		for _, p := range op.Parameters {
			switch p.In {
			case "query":
				query = append(query, p.Name)
			case "path":
				pathParams = append(pathParams, p.Name)
				if !p.Required {
					t.Errorf("%s: path parameter %s not required", key, p.Name)
				}
			}
		}
		wantQuery := slices.Clone(rt.query)
		if rt.method == "GET" && rt.scope != "" {
			wantQuery = append(wantQuery, "consistent")
		}
		sort.Strings(query)
		sort.Strings(wantQuery)
		if !slices.Equal(query, wantQuery) {
			t.Errorf("%s: documented query %v, route accepts %v", key, query, wantQuery)
		}
		var wantPath []string
		for _, m := range regexp.MustCompile(`\{([a-z]+)(?:\.\.\.)?\}`).FindAllStringSubmatch(rt.pattern, -1) {
			wantPath = append(wantPath, m[1])
		}
		if !slices.Equal(pathParams, wantPath) {
			t.Errorf("%s: documented path parameters %v, route has %v", key, pathParams, wantPath)
		}
		_, has401 := op.Responses["401"]
		_, has403 := op.Responses["403"]
		if has401 != (rt.scope != "") || has403 != (rt.scope == state.ScopeAdmin) {
			t.Errorf("%s: 401 documented %v, 403 documented %v, scope %q", key, has401, has403, rt.scope)
		}
		wantBody := rt.method == "POST" || rt.method == "PUT" || rt.method == "PATCH"
		if (op.RequestBody != nil) != wantBody {
			t.Errorf("%s: request body documented %v, route reads one %v", key, op.RequestBody != nil, wantBody)
		}
		for code := range op.Responses {
			if code[0] != '2' && !strings.Contains(string(op.Responses[code]), "#/components/schemas/Error") {
				t.Errorf("%s: %s response is not the Error schema", key, code)
			}
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if key := strings.ToUpper(method) + " " + path; !seen[key] {
				t.Errorf("%s: described but not routed", key)
			}
		}
	}
	for _, ref := range regexp.MustCompile(`"#/components/schemas/([A-Za-z]+)"`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := doc.Components.Schemas[ref[1]]; !ok {
			t.Errorf("dangling $ref %s", ref[1])
		}
	}
}

// TestOpenAPISchemasMatchTypes compares the members of each described object with the JSON
// members of the Go type the API encodes or decodes.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc, _ := loadSpec(t)
	for name, v := range map[string]any{
		"Room": RoomView{}, "RoomInput": RoomInput{}, "CredentialsInput": CredentialsInput{}, "RoomCreated": RoomCreated{},
		"Binding": state.Binding{}, "Leg": state.Leg{}, "Call": state.Call{}, "CallDetail": CallDetail{},
		"CallRecord": state.CallRecord{}, "Lists": state.Lists{}, "Ban": state.Ban{}, "BanInput": BanInput{},
		"Event": guard.Event{}, "Site": guard.Site{}, "EventSummary": EventSummary{}, "Member": cluster.Member{}, "JoinInput": JoinInput{},
		"Leader": LeaderView{}, "Health": Health{}, "Token": TokenView{}, "TokenInput": TokenInput{},
		"TokenCreated": TokenCreated{}, "AuditEntry": state.AuditEntry{}, "Error": APIError{},
	} {
		got := schemaProps(doc, doc.Components.Schemas[name])
		want := jsonFields(reflect.TypeOf(v))
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has %v; Go type %T encodes %v", name, got, v, want)
		}
	}
}

func schemaProps(doc oaDoc, s oaSchema) []string {
	if s.Ref != "" {
		return schemaProps(doc, doc.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")])
	}
	var out []string
	for k := range s.Properties {
		out = append(out, k)
	}
	for _, sub := range s.AllOf {
		out = append(out, schemaProps(doc, sub)...)
	}
	return out
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}
