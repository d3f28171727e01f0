// Package forge posts commit statuses to the forge that hosts the
// desired-state repository, and lists its open pull requests: Gitea, GitHub
// or GitLab, each through its own SDK behind the one small interface Forge.
//
// It never logs and never blocks its caller: a Poster queues statuses, keeps
// only the latest per commit and context, and posts them from its own
// goroutine with retry and backoff. What could not be posted is reported to
// the caller's OnError; a forge that refuses the token (401, 403, or 404 on
// the repository) gives an *AccessError, which retrying would not fix.
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"
)

// State is a commit status's state, in the words GitHub and Gitea use.
type State string

const (
	Pending State = "pending"
	Success State = "success"
	Failure State = "failure"
	Error   State = "error"
)

// final reports whether s is a verdict that a later pending must not replace.
func (s State) final() bool { return s == Success || s == Failure }

// MaxDescription is the longest description GitHub accepts; longer ones are
// cut (with "…") before they are sent to any forge.
const MaxDescription = 140

// Status is one commit status.
type Status struct {
	// Commit is the full hash of the commit the status is set on.
	Commit string
	// Context tells Sluice's statuses from other systems': sluice/<gate>.
	Context     string
	State       State
	Description string
	// TargetURL is the link the forge shows beside the status; may be empty.
	TargetURL string
}

// key is what a later status replaces: the same commit and context.
func (s Status) key() string { return s.Context + "\x00" + s.Commit }

// Forge sets commit statuses on one repository and lists its pull requests.
type Forge interface {
	// SetStatus creates or replaces the status s.Context of s.Commit.
	SetStatus(ctx context.Context, s Status) error
	// PullRequests lists at most max open pull requests (GitLab: merge
	// requests) into the branch base, the most recently updated first.
	// Every one has a positive Number, a full hash as Head and the Ref
	// this package made from its number.
	PullRequests(ctx context.Context, base string, max int) ([]PullRequest, error)
	// Name says which forge and repository this is, for messages:
	// "gitea http://127.0.0.1:3000 owner/name". It holds no credential.
	Name() string
}

// PullRequest is an open pull request, as Sluice needs it.
type PullRequest struct {
	Number int64
	// Head is the full hash of its head commit, as the forge reports it.
	Head string
	// Ref is where the forge serves the head in the repository itself, for
	// a fetch: refs/pull/N/head (Gitea, GitHub), refs/merge-requests/N/head
	// (GitLab). It is made from Number, never read from the forge's answer.
	Ref string
}

// MaxPullRequests bounds what PullRequests returns, whatever max asks.
const MaxPullRequests = 100

var hexHash = regexp.MustCompile(`^[0-9a-f]{40}$`)

// pull checks one pull request of a forge's answer and gives it its ref.
func pull(forge string, number int64, head, refFormat string) (PullRequest, error) {
	if number <= 0 {
		return PullRequest{}, fmt.Errorf("%s: list pull requests: a pull request numbered %d", forge, number)
	}
	if !hexHash.MatchString(head) {
		return PullRequest{}, fmt.Errorf("%s: list pull requests: #%d: head %q is not a full commit hash", forge, number, Truncate(head, 64))
	}
	return PullRequest{Number: number, Head: head, Ref: fmt.Sprintf(refFormat, number)}, nil
}

// Type is a kind of forge.
type Type string

const (
	Gitea  Type = "gitea"
	GitHub Type = "github"
	GitLab Type = "gitlab"
)

// Options say which forge and repository to post to.
type Options struct {
	Type Type
	// URL is the forge's address: the server's root for Gitea and GitLab
	// (the SDKs add /api/v1 and /api/v4), the API's root for GitHub
	// (https://api.github.com, or https://host/api/v3 for GitHub Enterprise).
	URL string
	// Repository is owner/name (GitLab: group/subgroup/name).
	Repository string
	// Token is the API token. It is sent only to URL, never printed.
	Token string
	// HTTPClient, if set, carries the requests (timeouts, proxies, tests).
	HTTPClient *http.Client
}

// New returns the Forge o describes.
func New(o Options) (Forge, error) {
	if o.Token == "" {
		return nil, errors.New("forge: no token")
	}
	if o.URL == "" {
		return nil, errors.New("forge: no URL")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultRequestTimeout}
	}
	switch o.Type {
	case Gitea:
		return newGitea(o)
	case GitHub:
		return newGitHub(o)
	case GitLab:
		return newGitLab(o)
	}
	return nil, fmt.Errorf("forge: unknown type %q: want gitea, github or gitlab", o.Type)
}

// ownerName splits owner/name; GitHub and Gitea have exactly two parts.
func ownerName(repo string) (string, string, error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("forge: repository %q: want owner/name", repo)
	}
	return owner, name, nil
}

// ErrAccess is what an *AccessError unwraps to.
var ErrAccess = errors.New("the forge refused the token")

// AccessError is a status the forge refused because of its configuration,
// not because it is down: the token is wrong (401), lacks the right to set
// statuses (403), or cannot see the repository (404, which is how forges
// answer a repository a token may not read). Retrying does not help; a
// person must fix the token or the repository in the config.
type AccessError struct {
	Forge   string // Forge.Name()
	Context string
	// Op is what was refused when it was not setting a status: "list pull
	// requests".
	Op   string
	Code int
	Msg  string // the forge's own message, if any
}

func (e *AccessError) Error() string {
	hint := map[int]string{
		http.StatusUnauthorized: "the token is not valid",
		http.StatusForbidden:    "the token may not set commit statuses on the repository",
		http.StatusNotFound:     "the repository does not exist or the token cannot see it",
	}[e.Code]
	what := "status " + e.Context
	if e.Op != "" {
		what = e.Op
		if e.Code == http.StatusForbidden {
			hint = "the token may not read the repository's pull requests"
		}
	}
	s := fmt.Sprintf("%s: %s: HTTP %d: %s", e.Forge, what, e.Code, hint)
	if e.Msg != "" {
		s += " (" + oneLine(e.Msg, 200) + ")"
	}
	return s
}

func (e *AccessError) Unwrap() error { return ErrAccess }

// HTTPError is any other refusal or failure the forge answered with.
type HTTPError struct {
	Forge string
	Code  int
	Msg   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.Forge, e.Code, oneLine(e.Msg, 200))
}

// retryable reports whether posting again later may succeed.
func retryable(err error) bool {
	var a *AccessError
	if errors.As(err, &a) {
		return false
	}
	var h *HTTPError
	if errors.As(err, &h) {
		return h.Code >= 500 || h.Code == http.StatusTooManyRequests || h.Code == http.StatusRequestTimeout
	}
	// Transport errors: the forge is down or unreachable.
	return true
}

// answer turns a forge's HTTP answer into AccessError or HTTPError; nil for 2xx.
func answer(forge, context string, code int, msg string) error {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusNotFound:
		return &AccessError{Forge: forge, Context: context, Code: code, Msg: msg}
	}
	return &HTTPError{Forge: forge, Code: code, Msg: msg}
}

// listAnswer is answer for a list of pull requests.
func listAnswer(forge string, code int, msg string) error {
	err := answer(forge, "", code, msg)
	var a *AccessError
	if errors.As(err, &a) {
		a.Op = "list pull requests"
	}
	var h *HTTPError
	if errors.As(err, &h) {
		h.Msg = "list pull requests: " + h.Msg
	}
	return err
}

// Truncate cuts s to at most n runes, the last one "…" when it was cut.
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	return Truncate(s, n)
}
