package forge

// Listing pull requests against recorded answers of GitHub's "List pull
// requests" and GitLab's "List project merge requests", and the paging
// and base filter of Gitea's list. NOT run against GitHub or GitLab (see
// recorded_test.go); Gitea's list is also tested for real in
// test/e2e/forge_test.go.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	head1 = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
	head2 = "e5bd3914e2e596debea16f433f57875b5b90bcd6"
)

// githubPull is one pull request of GitHub's list, trimmed to the fields
// around the ones read, in the documentation's shape.
func githubPull(n int, head, base string) string {
	return fmt.Sprintf(`{"url":"https://api.github.com/repos/octocat/Hello-World/pulls/%[1]d","id":1,"node_id":"MDExOlB1bGxSZXF1ZXN0MQ==","number":%[1]d,"state":"open","locked":false,"title":"Amazing new feature","user":{"login":"octocat","id":1},"body":"Please pull these awesome changes in!","created_at":"2011-01-26T19:01:12Z","updated_at":"2011-01-26T19:01:12Z","head":{"label":"octocat:new-topic","ref":"new-topic","sha":%[2]q,"user":{"login":"octocat","id":1},"repo":{"id":1296269,"full_name":"octocat/Hello-World"}},"base":{"label":"octocat:%[3]s","ref":%[3]q,"sha":"6dcb09b5b57875f334f61aebed695e2e4193db5e","user":{"login":"octocat","id":1},"repo":{"id":1296269,"full_name":"octocat/Hello-World"}},"draft":false}`, n, head, base)
}

func TestGitHubPullRequestsRecorded(t *testing.T) {
	// GitHub: GET /repos/{owner}/{repo}/pulls?state=open&base=...; the
	// base filter is the server's, the sort by last update too.
	query := "base=main&direction=desc&per_page=20&sort=updated&state=open"
	tests := []struct {
		name     string
		code     int
		answer   string
		want     []PullRequest
		wantErr  string
		wantCode int
	}{
		{
			name:   "open pull requests into main, with their heads and the refs they are fetched by",
			code:   200,
			answer: "[" + githubPull(7, head1, "main") + "," + githubPull(3, head2, "main") + "]",
			want: []PullRequest{
				{Number: 7, Head: head1, Ref: "refs/pull/7/head"},
				{Number: 3, Head: head2, Ref: "refs/pull/3/head"},
			},
		},
		{
			name:   "a pull request into another base in the answer is left out",
			code:   200,
			answer: "[" + githubPull(7, head1, "staging") + "," + githubPull(3, head2, "main") + "]",
			want:   []PullRequest{{Number: 3, Head: head2, Ref: "refs/pull/3/head"}},
		},
		{
			name:    "a head that is not a full hash is an error naming the pull request",
			code:    200,
			answer:  "[" + githubPull(7, "refs/heads/main", "main") + "]",
			wantErr: `#7: head "refs/heads/main" is not a full commit hash`,
		},
		{
			name:     "a repository the token cannot see is an access error",
			code:     404,
			answer:   `{"message":"Not Found","documentation_url":"https://docs.github.com/rest/pulls/pulls#list-pull-requests","status":"404"}`,
			wantErr:  "list pull requests: HTTP 404",
			wantCode: 404,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, recorded{method: "GET", path: "/repos/octocat/Hello-World/pulls", query: query, auth: "Bearer ghp_test", code: tt.code, answer: tt.answer})
			f, err := New(Options{Type: GitHub, URL: url, Repository: "octocat/Hello-World", Token: "ghp_test"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.PullRequests(context.Background(), "main", 20)
			checkList(t, got, err, tt.want, tt.wantErr, tt.wantCode)
		})
	}
}

// gitlabMR is one merge request of GitLab's list, trimmed, in the
// documentation's shape.
func gitlabMR(iid int, sha, target string) string {
	return fmt.Sprintf(`{"id":1,"iid":%[1]d,"project_id":3,"title":"test1","description":"fixed login page css paddings","state":"opened","created_at":"2017-04-29T08:46:00Z","updated_at":"2017-04-29T08:46:00Z","target_branch":%[3]q,"source_branch":"test1","upvotes":0,"downvotes":0,"author":{"id":1,"username":"admin","name":"Administrator","state":"active"},"source_project_id":2,"target_project_id":3,"draft":false,"work_in_progress":false,"merge_when_pipeline_succeeds":true,"merge_status":"can_be_merged","detailed_merge_status":"not_open","sha":%[2]q,"merge_commit_sha":null,"squash_commit_sha":null,"references":{"short":"!%[1]d","relative":"!%[1]d","full":"my-group/my-project!%[1]d"},"web_url":"http://gitlab.example.com/my-group/my-project/merge_requests/%[1]d"}`, iid, sha, target)
}

func TestGitLabPullRequestsRecorded(t *testing.T) {
	// GitLab: GET /api/v4/projects/:id/merge_requests?state=opened&
	// target_branch=...; a merge request is known by its iid, and its head
	// is served at refs/merge-requests/:iid/head.
	query := "order_by=updated_at&per_page=20&sort=desc&state=opened&target_branch=main"
	tests := []struct {
		name     string
		code     int
		answer   string
		want     []PullRequest
		wantErr  string
		wantCode int
	}{
		{
			name:   "open merge requests into main, by iid, with GitLab's refs",
			code:   200,
			answer: "[" + gitlabMR(12, head1, "main") + "," + gitlabMR(4, head2, "main") + "]",
			want: []PullRequest{
				{Number: 12, Head: head1, Ref: "refs/merge-requests/12/head"},
				{Number: 4, Head: head2, Ref: "refs/merge-requests/4/head"},
			},
		},
		{
			name:    "a merge request without a number is an error",
			code:    200,
			answer:  "[" + gitlabMR(0, head1, "main") + "]",
			wantErr: "a pull request numbered 0",
		},
		{
			name:     "a reporter's token without access is an access error",
			code:     403,
			answer:   `{"message":"403 Forbidden"}`,
			wantErr:  "the token may not read the repository's pull requests",
			wantCode: 403,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, recorded{method: "GET", path: "/api/v4/projects/platform%2Fdeploy%2Fdesired/merge_requests", query: query, auth: "glpat-test", code: tt.code, answer: tt.answer})
			f, err := New(Options{Type: GitLab, URL: url, Repository: "platform/deploy/desired", Token: "glpat-test"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.PullRequests(context.Background(), "main", 20)
			checkList(t, got, err, tt.want, tt.wantErr, tt.wantCode)
		})
	}
}

// TestGiteaPullRequestsPages: Gitea's list has no base filter, so pages
// are read until max pull requests into the base are found, at most
// giteaPages of them.
func TestGiteaPullRequestsPages(t *testing.T) {
	giteaPull := func(n int, base string) string {
		return fmt.Sprintf(`{"id":%[1]d,"number":%[1]d,"state":"open","title":"t","base":{"label":%[2]q,"ref":%[2]q,"sha":%[3]q,"repo_id":1},"head":{"label":"topic","ref":"topic","sha":%[3]q,"repo_id":1}}`, n, base, head1)
	}
	page := func(first, n int, base string) string {
		var ps []string
		for i := range n {
			b := base
			if i%2 == 1 {
				b = "staging"
			}
			ps = append(ps, giteaPull(first-i, b))
		}
		return "[" + strings.Join(ps, ",") + "]"
	}
	var pages []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/api/v1/repos/dev/desired/pulls" || q.Get("state") != "open" || q.Get("sort") != "recentupdate" || q.Get("limit") != "50" {
			t.Errorf("request %s, want the open pulls by recent update, 50 a page", r.URL)
		}
		pages = append(pages, q.Get("page"))
		w.Header().Set("Content-Type", "application/json")
		switch q.Get("page") {
		case "1":
			fmt.Fprint(w, page(1000, 50, "main")) // 25 into main
		default:
			fmt.Fprint(w, page(900, 50, "main"))
		}
	}))
	t.Cleanup(srv.Close)
	f, err := New(Options{Type: Gitea, URL: srv.URL, Repository: "dev/desired", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.PullRequests(context.Background(), "main", 30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 || got[0].Number != 1000 || got[0].Ref != "refs/pull/1000/head" || got[25].Number != 900 {
		t.Errorf("got %d pull requests (first %+v), want 30: 25 of page 1 into main, then 5 of page 2", len(got), got[0])
	}
	for _, p := range got {
		if p.Number%2 != 0 {
			t.Errorf("#%d is into staging, not main", p.Number)
		}
	}
	if diff := cmp.Diff([]string{"1", "2"}, pages); diff != "" {
		t.Errorf("pages read (-want +got):\n%s", diff)
	}
	pages = nil
	if _, err := f.PullRequests(context.Background(), "nowhere", 20); err != nil {
		t.Fatal(err)
	}
	if len(pages) != giteaPages {
		t.Errorf("read %d pages for a base no pull request is into, want the bound %d", len(pages), giteaPages)
	}
}

func checkList(t *testing.T, got []PullRequest, err error, want []PullRequest, wantErr string, wantCode int) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want one saying %q", err, wantErr)
		}
		var a *AccessError
		if wantCode != 0 && (!errors.As(err, &a) || a.Code != wantCode) {
			t.Errorf("error %v, want an access error with HTTP %d", err, wantCode)
		}
		if strings.Contains(err.Error(), "ghp_test") || strings.Contains(err.Error(), "glpat-test") {
			t.Errorf("error shows the token: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("PullRequests: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pull requests (-want +got):\n%s", diff)
	}
}
