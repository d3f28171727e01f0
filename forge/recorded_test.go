package forge

// These tests post statuses and list pull requests against an httptest
// server that answers with the request and response shapes of GitHub's and
// GitLab's API documentation ("Create a commit status", "Set the pipeline
// status of a commit", "List pull requests", "List project merge
// requests"), recorded here by hand. They are NOT run against the real
// services: they check what the SDKs send and how their answers are read.
// Gitea is tested for real in test/e2e/forge_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e"

type recorded struct {
	// what the forge must receive
	method, path, auth string
	query              string         // for a GET: the query, keys sorted
	body               map[string]any // for a POST
	// what it answers
	code   int
	answer string
}

func serve(t *testing.T, want recorded) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != want.method || r.URL.EscapedPath() != want.path {
			t.Errorf("request %s %s, want %s %s", r.Method, r.URL.EscapedPath(), want.method, want.path)
		}
		if got := r.Header.Get("Authorization") + r.Header.Get("Private-Token"); got != want.auth {
			t.Errorf("credential header %q, want %q", got, want.auth)
		}
		if want.method == "GET" {
			if got := r.URL.Query().Encode(); got != want.query {
				t.Errorf("query %q, want %q", got, want.query)
			}
		} else {
			b, _ := io.ReadAll(r.Body)
			var body map[string]any
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("request body is not JSON: %v: %s", err, b)
			}
			if diff := cmp.Diff(want.body, body); diff != "" {
				t.Errorf("request body (-want +got):\n%s", diff)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(want.code)
		io.WriteString(w, want.answer)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestGitHubRecorded(t *testing.T) {
	// GitHub: POST /repos/{owner}/{repo}/statuses/{sha}, "Authorization:
	// Bearer", states pending/success/failure/error, 201 on success.
	created := `{"url":"https://api.github.com/repos/octocat/Hello-World/statuses/` + sha + `","avatar_url":"https://github.com/images/error/hubot_happy.gif","id":1,"node_id":"MDY6U3RhdHVzMQ==","state":"failure","description":"reverted: health: a not ready","target_url":"https://sluice.example.com/readyz","context":"sluice/staging","created_at":"2012-07-20T01:19:13Z","updated_at":"2012-07-20T01:19:13Z","creator":{"login":"octocat","id":1}}`
	long := strings.Repeat("x", 200)
	tests := []struct {
		name     string
		status   Status
		wantBody map[string]any
		code     int
		answer   string
		wantCode int // 0: no error; else the AccessError's or HTTPError's code
		access   bool
		retry    bool
	}{
		{
			name:     "a failure is posted with its description and link",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Failure, Description: "reverted: health: a not ready", TargetURL: "https://sluice.example.com/readyz"},
			wantBody: map[string]any{"state": "failure", "context": "sluice/staging", "description": "reverted: health: a not ready", "target_url": "https://sluice.example.com/readyz"},
			code:     201, answer: created,
		},
		{
			name:     "a long description is cut to 140 characters and no link is sent when there is none",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Pending, Description: long},
			wantBody: map[string]any{"state": "pending", "context": "sluice/staging", "description": strings.Repeat("x", 139) + "…"},
			code:     201, answer: created,
		},
		{
			name:     "bad credentials are an access error",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Success, Description: "passed"},
			wantBody: map[string]any{"state": "success", "context": "sluice/staging", "description": "passed"},
			code:     401, answer: `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`,
			wantCode: 401, access: true,
		},
		{
			name:     "a token without the right to set statuses is an access error",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Success, Description: "passed"},
			wantBody: map[string]any{"state": "success", "context": "sluice/staging", "description": "passed"},
			code:     403, answer: `{"message":"Resource not accessible by personal access token","documentation_url":"https://docs.github.com/rest/commits/statuses#create-a-commit-status","status":"403"}`,
			wantCode: 403, access: true,
		},
		{
			name:     "a repository the token cannot see is an access error",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Success, Description: "passed"},
			wantBody: map[string]any{"state": "success", "context": "sluice/staging", "description": "passed"},
			code:     404, answer: `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/commits/statuses#create-a-commit-status","status":"404"}`,
			wantCode: 404, access: true,
		},
		{
			name:     "a server error is retried",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Success, Description: "passed"},
			wantBody: map[string]any{"state": "success", "context": "sluice/staging", "description": "passed"},
			code:     502, answer: `{"message":"Server Error"}`,
			wantCode: 502, retry: true,
		},
		{
			name:     "a validation error is not retried",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Success, Description: "passed"},
			wantBody: map[string]any{"state": "success", "context": "sluice/staging", "description": "passed"},
			code:     422, answer: `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","message":"This SHA and context has reached the maximum number of statuses."}],"documentation_url":"https://docs.github.com/rest/commits/statuses#create-a-commit-status","status":"422"}`,
			wantCode: 422,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, recorded{method: "POST", path: "/repos/octocat/Hello-World/statuses/" + sha, auth: "Bearer ghp_test", body: tt.wantBody, code: tt.code, answer: tt.answer})
			f, err := New(Options{Type: GitHub, URL: url, Repository: "octocat/Hello-World", Token: "ghp_test"})
			if err != nil {
				t.Fatal(err)
			}
			checkAnswer(t, f.SetStatus(context.Background(), tt.status), tt.wantCode, tt.access, tt.retry)
		})
	}
}

func TestGitLabRecorded(t *testing.T) {
	// GitLab: POST /api/v4/projects/:id/statuses/:sha with the project's
	// path URL-encoded as its id, "PRIVATE-TOKEN", states
	// pending/running/success/failed/canceled, the context as "name".
	created := `{"id":93,"sha":"` + sha + `","ref":"main","status":"success","name":"sluice/staging","target_url":null,"description":"passed","created_at":"2016-01-19T09:05:50.355Z","started_at":null,"finished_at":"2016-01-19T09:05:50.365Z","allow_failure":false,"coverage":null,"author":{"username":"sluice","id":2}}`
	tests := []struct {
		name     string
		status   Status
		wantBody map[string]any
		code     int
		answer   string
		wantCode int
		access   bool
		retry    bool
	}{
		{
			name:     "success is posted under the context's name",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Success, Description: "passed"},
			wantBody: map[string]any{"state": "success", "name": "sluice/staging", "description": "passed"},
			code:     201, answer: created,
		},
		{
			name:     "failure is GitLab's failed",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Failure, Description: "reverted: tests: a-checks-b failed", TargetURL: "https://sluice.example.com/readyz"},
			wantBody: map[string]any{"state": "failed", "name": "sluice/staging", "description": "reverted: tests: a-checks-b failed", "target_url": "https://sluice.example.com/readyz"},
			code:     201, answer: strings.Replace(created, `"status":"success"`, `"status":"failed"`, 1),
		},
		{
			name:     "a status already in that state is set",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Pending, Description: "queued"},
			wantBody: map[string]any{"state": "pending", "name": "sluice/staging", "description": "queued"},
			code:     400, answer: `{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}`,
		},
		{
			name:     "an unknown token is an access error",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Pending, Description: "queued"},
			wantBody: map[string]any{"state": "pending", "name": "sluice/staging", "description": "queued"},
			code:     401, answer: `{"message":"401 Unauthorized"}`,
			wantCode: 401, access: true,
		},
		{
			name:     "a reporter's token is an access error",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Pending, Description: "queued"},
			wantBody: map[string]any{"state": "pending", "name": "sluice/staging", "description": "queued"},
			code:     403, answer: `{"message":"403 Forbidden"}`,
			wantCode: 403, access: true,
		},
		{
			name:     "a project the token cannot see is an access error",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Pending, Description: "queued"},
			wantBody: map[string]any{"state": "pending", "name": "sluice/staging", "description": "queued"},
			code:     404, answer: `{"message":"404 Project Not Found"}`,
			wantCode: 404, access: true,
		},
		{
			name:     "an unavailable server is retried",
			status:   Status{Commit: sha, Context: "sluice/staging", State: Pending, Description: "queued"},
			wantBody: map[string]any{"state": "pending", "name": "sluice/staging", "description": "queued"},
			code:     503, answer: `{"message":"503 Service Unavailable"}`,
			wantCode: 503, retry: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, recorded{method: "POST", path: "/api/v4/projects/platform%2Fdeploy%2Fdesired/statuses/" + sha, auth: "glpat-test", body: tt.wantBody, code: tt.code, answer: tt.answer})
			f, err := New(Options{Type: GitLab, URL: url, Repository: "platform/deploy/desired", Token: "glpat-test"})
			if err != nil {
				t.Fatal(err)
			}
			checkAnswer(t, f.SetStatus(context.Background(), tt.status), tt.wantCode, tt.access, tt.retry)
		})
	}
}

func checkAnswer(t *testing.T, err error, wantCode int, access, retry bool) {
	t.Helper()
	if wantCode == 0 {
		if err != nil {
			t.Fatalf("SetStatus: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("SetStatus succeeded, want HTTP %d", wantCode)
	}
	var a *AccessError
	var h *HTTPError
	switch {
	case errors.As(err, &a):
		if !access || a.Code != wantCode || a.Context != "sluice/staging" || !errors.Is(err, ErrAccess) {
			t.Errorf("access error %+v, want code %d (access %v)", a, wantCode, access)
		}
	case errors.As(err, &h):
		if access || h.Code != wantCode {
			t.Errorf("HTTP error %+v, want code %d (access %v)", h, wantCode, access)
		}
	default:
		t.Fatalf("error %T %v is neither an AccessError nor an HTTPError", err, err)
	}
	if retryable(err) != retry {
		t.Errorf("retryable(%v) = %v, want %v", err, !retry, retry)
	}
	if strings.Contains(err.Error(), "test") && strings.Contains(err.Error(), "ghp_test") || strings.Contains(err.Error(), "glpat-test") {
		t.Errorf("error shows the token: %v", err)
	}
}
