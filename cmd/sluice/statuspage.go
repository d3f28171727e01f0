package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluice-gitops/sluice/gitrepo"
	"github.com/sluice-gitops/sluice/reconcile"
	"github.com/sluice-gitops/sluice/reconcile/plan"
	"github.com/sluice-gitops/sluice/testenv"
)

// The status page is what --public-url shows, and what the commit statuses
// on the forge link to: /status lists the gates, /status/<gate>/<commit>
// tells one commit's verdict. It is kept from the runner's events, in
// memory and bounded per gate; a commit this process has not seen since it
// started is looked up in the verified notes, and a queued one in the
// queue. Whatever a commit controls (subject, author, reason) is clipped,
// scrubbed of URL credentials and absolute file paths (which could name a
// secret's file), and escaped by html/template or encoding/json.

const (
	maxStatusCommits = 500 // commits remembered per gate; the oldest go first
	maxRecentShown   = 20  // verdicts /status lists per gate
	maxSubjectLen    = 200
	maxAuthorLen     = 100
	maxReasonLen     = 4000
	maxReasonLines   = 40
	// statusRefresh is how old the queue and target tip /status shows may
	// be: requests never make the repository busier than this.
	statusRefresh       = 5 * time.Second
	statusLookupTimeout = 3 * time.Second
	fullSHALen          = 40
)

// Verdicts as the status page tells them: the runner's, and pending (queued
// or under test).
const pendingVerdict = "pending"

// commitView is one commit of one gate, as /status/<gate>/<commit> tells it.
type commitView struct {
	Gate    string `json:"gate"`
	SHA     string `json:"sha"`
	Subject string `json:"subject,omitempty"`
	Author  string `json:"author,omitempty"`
	// Verdict is passed, failed, error (the infrastructure's: it is tested
	// again) or pending.
	Verdict string `json:"verdict"`
	// Step is what a pending commit waits for: "queued" or the step of its
	// test under way.
	Step   string `json:"step,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Judged is how the verdict was reached: alone, speculatively, in a
	// batch or by its revert; JudgedDetail says more when there is more.
	Judged       string     `json:"judged,omitempty"`
	JudgedDetail string     `json:"judgedDetail,omitempty"`
	At           *time.Time `json:"at,omitempty"`
	Took         string     `json:"took,omitempty"`
	Revert       string     `json:"revertCommit,omitempty"`
	// From says where the page got it: "events" (this process saw it),
	// "notes" (the verified record in Git) or "queue".
	From string `json:"from"`
}

// gateView is one gate on /status.
type gateView struct {
	Name       string `json:"name"`
	Path       string `json:"path,omitempty"`
	Source     string `json:"sourceBranch,omitempty"`
	Target     string `json:"targetBranch,omitempty"`
	TargetTip  string `json:"targetTip,omitempty"`
	Queue      *int   `json:"queueLength,omitempty"`
	QueueError string `json:"queueError,omitempty"`
	// State is ok, stopped, retrying, not drained yet, or another replica
	// (with --leader-elect, when this one does not lead the gate).
	State     string       `json:"state"`
	Reason    string       `json:"reason,omitempty"` // why stopped or retrying
	LastDrain *time.Time   `json:"lastDrain,omitempty"`
	Testing   []commitView `json:"testing"`
	Recent    []commitView `json:"recentVerdicts"`
}

type statusGate struct {
	path, target string
	serial       bool
	commits      map[string]*commitView
	order        []string // commits' keys, oldest first
	testing      []string // under test now, in the order they started
	tip          string
	stopped      string
	retrying     string
	drained      time.Time
	follower     bool // --leader-elect: another replica leads it

	queue     []string // as of queueAt, when queueOK
	queueOK   bool
	queueErr  string
	queueAt   time.Time
	refreshMu sync.Mutex // one refresh at a time
}

// statusStore keeps what the status page shows.
type statusStore struct {
	source string
	names  []string // in the config's order
	now    func() time.Time
	// timeout bounds each read of the repository for a request.
	timeout time.Duration
	// branches returns the target tip and the queue of a target branch as
	// the repository has them; nil: the page shows the events only.
	branches func(ctx context.Context, target string) (tip string, queue []string, err error)
	// lookup returns the verified record of gate on a commit this process
	// has not seen; ok false when there is none or it is not Sluice's.
	lookup func(ctx context.Context, gate string, commit plumbing.Hash) (commitView, bool, error)

	mu    sync.Mutex
	gates map[string]*statusGate
}

func newStatusStore(gates []string) *statusStore {
	s := &statusStore{names: slices.Clone(gates), now: time.Now, timeout: statusLookupTimeout, gates: map[string]*statusGate{}}
	for _, g := range gates {
		s.gates[g] = &statusGate{commits: map[string]*commitView{}, serial: true}
	}
	return s
}

// useRepository describes the gates and lets the page read the queue, the
// target tips and the verified notes of repo.
func (s *statusStore) useRepository(repo *gitrepo.Repository, key *gitrepo.VerdictKey, source string, gates []reconcile.Gate) {
	s.source = source
	s.mu.Lock()
	for _, g := range gates {
		if sg := s.gates[g.Name]; sg != nil {
			sg.path, sg.target = g.Path, g.Target
			sg.serial = g.Strategy == "" || g.Strategy == plan.Serial
		}
	}
	s.mu.Unlock()
	if repo == nil {
		return
	}
	s.branches = func(ctx context.Context, target string) (string, []string, error) {
		tip, err := repo.Tip(ctx, target)
		if err != nil {
			return "", nil, err
		}
		q, err := repo.Queue(ctx, source, target)
		if err != nil {
			return tip.String(), nil, err
		}
		out := make([]string, len(q))
		for i, c := range q {
			out[i] = c.Hash.String()
		}
		return tip.String(), out, nil
	}
	if key == nil {
		return
	}
	s.lookup = func(ctx context.Context, gate string, h plumbing.Hash) (commitView, bool, error) {
		c, err := repo.Commit(ctx, h)
		if err != nil {
			return commitView{}, false, nil // not in this repository
		}
		rec, state, err := repo.ReadRecord(ctx, h, gate, key)
		if err != nil || state != gitrepo.RecordVerified {
			return commitView{}, false, err
		}
		v := commitView{Gate: gate, SHA: h.String(), Subject: c.Subject, Author: c.Author.Name, Verdict: rec.Verdict, From: "notes"}
		v.Reason, v.Judged, v.JudgedDetail = splitJudged(rec.Reason)
		if !rec.Started.IsZero() {
			at := rec.Started.UTC()
			v.At = &at
		}
		if d, ok := rec.Durations[reconcile.StepTotal]; ok {
			v.Took = d.Round(100 * time.Millisecond).String()
		}
		if !rec.RevertCommit.IsZero() {
			v.Revert = rec.RevertCommit.String()
		}
		return v, true, nil
	}
}

// testSteps are the events that say a commit is under test.
var testSteps = map[string]bool{
	reconcile.StepRender: true, testenv.StepNamespace: true, testenv.StepOverlay: true, testenv.StepApply: true,
	testenv.StepHealth: true, testenv.StepTests: true, testenv.StepCommands: true, "control": true,
}

// event records a step of the queue (Runner.OnEvent).
func (s *statusStore) event(e reconcile.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[e.Gate]
	if g == nil || e.Commit.Hash.IsZero() {
		return
	}
	sha := e.Commit.Hash.String()
	switch {
	case e.Step == "fast-forward":
		g.tip = sha
		return
	case e.Step == "revert":
		if c := g.commits[sha]; c != nil && !e.Revert.IsZero() {
			c.Revert = e.Revert.String()
		}
		return
	case e.Step == "verdict":
		c := s.commitLocked(g, e)
		c.Verdict, c.Step = string(e.Verdict), ""
		c.Reason, c.Judged, c.JudgedDetail = splitJudged(e.Detail)
		if c.Judged == "" && g.serial && e.Verdict != reconcile.Error {
			c.Judged = string(plan.Alone)
		}
		at := s.now().UTC()
		c.At = &at
		c.Took = ""
		if e.Took > 0 {
			c.Took = e.Took.Round(100 * time.Millisecond).String()
		}
		if !e.Revert.IsZero() {
			c.Revert = e.Revert.String()
		}
		g.testing = slices.DeleteFunc(g.testing, func(t string) bool { return t == sha })
	case testSteps[e.Step]:
		c := s.commitLocked(g, e)
		c.Step = e.Step
		if !slices.Contains(g.testing, sha) {
			g.testing = append(g.testing, sha)
		}
	}
}

// commitLocked is gate g's entry of e's commit, made if new; the oldest
// entry goes when there are more than maxStatusCommits.
func (s *statusStore) commitLocked(g *statusGate, e reconcile.Event) *commitView {
	sha := e.Commit.Hash.String()
	if c := g.commits[sha]; c != nil {
		return c
	}
	c := &commitView{Gate: e.Gate, SHA: sha, Subject: e.Commit.Subject, Author: e.Commit.Author.Name, From: "events"}
	g.commits[sha] = c
	g.order = append(g.order, sha)
	for len(g.order) > maxStatusCommits {
		old := g.order[0]
		g.order = g.order[1:]
		delete(g.commits, old)
		g.testing = slices.DeleteFunc(g.testing, func(t string) bool { return t == old })
	}
	return c
}

// drained records the end of a gate's drain (Runner.OnDrain): nothing is
// under test any more, and the gate is fine, stopped or retrying.
func (s *statusStore) drained(gate string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[gate]
	if g == nil {
		return
	}
	g.testing, g.drained = nil, s.now().UTC()
	g.stopped, g.retrying = "", ""
	switch {
	case err == nil:
	case errors.Is(err, reconcile.ErrGateStopped):
		g.stopped = err.Error()
		var se *reconcile.StoppedError
		if errors.As(err, &se) {
			g.stopped = se.Reason
		}
	default:
		g.retrying = err.Error()
	}
}

// leading records whether this replica leads gate (--leader-elect).
func (s *statusStore) leading(gate string, lead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.gates[gate]; g != nil {
		g.follower = !lead
		g.testing = nil
	}
}

// refresh reads gate's target tip and queue when they are older than
// statusRefresh. A busy repository is no error: the page shows the last
// values it has.
func (s *statusStore) refresh(ctx context.Context, name string) {
	s.mu.Lock()
	g := s.gates[name]
	s.mu.Unlock()
	if g == nil || s.branches == nil {
		return
	}
	g.refreshMu.Lock()
	defer g.refreshMu.Unlock()
	s.mu.Lock()
	target, fresh := g.target, s.now().Sub(g.queueAt) < statusRefresh
	s.mu.Unlock()
	if fresh || target == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tip, queue, err := s.branches(ctx, target)
	s.mu.Lock()
	defer s.mu.Unlock()
	g.queueAt = s.now() // a busy repository is not asked again at once either
	if ctx.Err() != nil {
		return
	}
	if tip != "" {
		g.tip = tip
	}
	g.queue, g.queueOK, g.queueErr = queue, err == nil, ""
	if err != nil {
		g.queueErr = err.Error()
	}
}

func (s *statusStore) gateView(name string) gateView {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[name]
	v := gateView{Name: name, Path: g.path, Source: s.source, Target: g.target, TargetTip: g.tip,
		Testing: []commitView{}, Recent: []commitView{}}
	if g.queueOK {
		n := len(g.queue)
		v.Queue = &n
	}
	v.QueueError = scrub(g.queueErr, maxReasonLen, 3)
	switch {
	case g.follower:
		v.State, v.Reason = "another replica", "another replica leads this gate (--leader-elect): what this one shows of it may be old"
	case g.stopped != "":
		v.State, v.Reason = "stopped", g.stopped
	case g.retrying != "":
		v.State, v.Reason = "retrying", g.retrying
	case g.drained.IsZero():
		v.State = "not drained yet"
	default:
		v.State = "ok"
	}
	v.Reason = scrub(v.Reason, maxReasonLen, maxReasonLines)
	if !g.drained.IsZero() {
		at := g.drained
		v.LastDrain = &at
	}
	for _, sha := range g.testing {
		v.Testing = append(v.Testing, s.viewLocked(g, *g.commits[sha]))
	}
	var judged []*commitView
	for _, c := range g.commits {
		if c.Verdict != "" && c.At != nil {
			judged = append(judged, c)
		}
	}
	slices.SortFunc(judged, func(a, b *commitView) int {
		if d := b.At.Compare(*a.At); d != 0 {
			return d
		}
		return strings.Compare(a.SHA, b.SHA)
	})
	for _, c := range judged[:min(len(judged), maxRecentShown)] {
		v.Recent = append(v.Recent, s.viewLocked(g, *c))
	}
	return v
}

// viewLocked is c as the page shows it: pending while under test, with
// what the page shows of it clipped and scrubbed.
func (s *statusStore) viewLocked(g *statusGate, c commitView) commitView {
	if slices.Contains(g.testing, c.SHA) || c.Verdict == "" {
		if c.Verdict == string(reconcile.Error) && c.Reason != "" {
			c.Reason = "the last test ended in an error (it is tested again): " + c.Reason
		}
		c.Verdict = pendingVerdict
		if c.Step == "" {
			c.Step = "queued"
		}
	}
	return clipView(c)
}

func clipView(c commitView) commitView {
	// The subject and author are the commit's own words, public in Git:
	// clipped only. The reason holds what tests and errors printed.
	c.Subject = clipText(c.Subject, maxSubjectLen, 1)
	c.Author = clipText(c.Author, maxAuthorLen, 1)
	c.Reason = scrub(c.Reason, maxReasonLen, maxReasonLines)
	c.JudgedDetail = clipText(c.JudgedDetail, maxSubjectLen, 1)
	return c
}

// errNoCommit: the gate has no verdict, test or queue entry of the commit.
var errNoCommit = errors.New("no such commit")

// commit is gate's commit sha (a full hash, or a prefix of one this
// process saw), from the events, else the queue, else the verified notes.
func (s *statusStore) commit(ctx context.Context, gate, sha string) (commitView, error) {
	s.refresh(ctx, gate)
	s.mu.Lock()
	g := s.gates[gate]
	full := len(sha) == fullSHALen
	var match []string
	for _, k := range g.order {
		if k == sha || !full && strings.HasPrefix(k, sha) {
			match = append(match, k)
		}
	}
	if len(match) == 1 {
		v := s.viewLocked(g, *g.commits[match[0]])
		s.mu.Unlock()
		return v, nil
	}
	queued := slices.Index(g.queue, sha)
	s.mu.Unlock()
	if !full {
		return commitView{}, errNoCommit
	}
	if s.lookup != nil {
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		v, ok, err := s.lookup(ctx, gate, plumbing.NewHash(sha))
		if err != nil && queued < 0 {
			return commitView{}, err
		}
		if ok {
			return clipView(v), nil
		}
	}
	if queued >= 0 {
		return commitView{Gate: gate, SHA: sha, Verdict: pendingVerdict, Step: "queued", From: "queue"}, nil
	}
	return commitView{}, errNoCommit
}

// splitJudged takes the line the runner adds to a reason to say how the
// verdict was reached, "(judged speculatively, behind 2 commits not yet
// judged)", out of it: the reason without it, the way (plan.How) and the
// rest of the line.
func splitJudged(detail string) (reason, how, more string) {
	detail = strings.TrimRight(detail, "\n")
	i := strings.LastIndex(detail, "\n(judged ")
	line := ""
	switch {
	case i >= 0 && strings.HasSuffix(detail, ")"):
		reason, line = detail[:i], detail[i+len("\n(judged "):len(detail)-1]
	case strings.HasPrefix(detail, "judged "):
		line = strings.TrimPrefix(detail, "judged ")
	case strings.HasPrefix(detail, "(judged ") && strings.HasSuffix(detail, ")"):
		line = detail[len("(judged ") : len(detail)-1]
	default:
		return detail, "", ""
	}
	for _, h := range []plan.How{plan.Alone, plan.Speculatively, plan.InBatch} {
		if rest, ok := strings.CutPrefix(line, string(h)); ok {
			return reason, string(h), strings.TrimLeft(rest, ", ")
		}
	}
	if strings.HasPrefix(line, "by the revert") {
		return reason, string(plan.ByRevert), ""
	}
	return reason, "", line
}

var (
	// scheme://user:password@host: the user information goes.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@`)
	// ?token=..., &access_token=..., &sig=...: the value goes.
	secretParam = regexp.MustCompile(`(?i)([?&;](?:[a-z_]*token|[a-z_]*key|password|secret|sig|signature|code)=)[^&\s"'<>]+`)
	// Authorization headers and their values.
	authHeader = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}`)
	// An absolute file path can name a secret's file (a token, a key, a
	// kubeconfig): none is shown.
	absPath = regexp.MustCompile(`(^|[\s"'(=,\[])/[^\s"'(),\[\]<>:;]+`)
)

// scrub makes text that tests or errors printed fit to show: no URL
// credential, token parameter, authorization value or absolute path, and
// clipped.
func scrub(s string, n, lines int) string {
	s = strings.ToValidUTF8(s, "�")
	s = urlUserinfo.ReplaceAllString(s, "${1}…@")
	s = secretParam.ReplaceAllString(s, "${1}…")
	s = authHeader.ReplaceAllString(s, "${1} …")
	s = absPath.ReplaceAllString(s, "${1}[path]")
	return clipText(s, n, lines)
}

// clipText keeps at most lines lines (one: the lines joined) of at most n
// bytes in all, without control characters.
func clipText(s string, n, lines int) string {
	if s == "" {
		return ""
	}
	s = strings.ToValidUTF8(s, "�")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) && r != '\u2028' && r != '\u2029' {
			return r
		}
		return -1
	}, s)
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if lines == 1 {
		s = strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
	} else if len(parts) > lines {
		s = strings.Join(parts[:lines], "\n") + "\n…"
	}
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// link is the status page of gate's commit sha that a commit status on the
// forge links to (forge.go), "" without --public-url.
func (w *forgeFeed) link(gate, sha string) string {
	if w.targetURL == "" {
		return ""
	}
	return w.targetURL + url.PathEscape(gate) + "/" + sha
}

// register serves /status and /status/{gate}/{commit} on mux.
func (s *statusStore) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", s.serveGates)
	mux.HandleFunc("GET /status/{gate}/{commit}", s.serveCommit)
	mux.HandleFunc("GET /status/", func(w http.ResponseWriter, _ *http.Request) {
		notFound(w, "not a status page: see /status")
	})
}

func (s *statusStore) serveGates(w http.ResponseWriter, r *http.Request) {
	page := statusPage{Source: s.source, Gates: []gateView{}}
	for _, name := range s.names {
		s.refresh(r.Context(), name)
		page.Gates = append(page.Gates, s.gateView(name))
	}
	if wantsJSON(r) {
		writeJSON(w, page)
		return
	}
	writeHTML(w, "gates", page)
}

func (s *statusStore) serveCommit(w http.ResponseWriter, r *http.Request) {
	gate, sha := r.PathValue("gate"), strings.ToLower(r.PathValue("commit"))
	s.mu.Lock()
	_, known := s.gates[gate]
	s.mu.Unlock()
	if !known {
		notFound(w, "no such gate")
		return
	}
	if len(sha) < 4 || len(sha) > fullSHALen || !isHex(sha) {
		notFound(w, "not a commit hash")
		return
	}
	v, err := s.commit(r.Context(), gate, sha)
	switch {
	case errors.Is(err, errNoCommit):
		notFound(w, "gate "+gate+" has no verdict, test or queue entry of commit "+sha+" on this replica")
		return
	case err != nil:
		// The note could not be read: say so without the error, which
		// may name the repository's files.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("the verdict notes cannot be read now; try again\n"))
		return
	}
	if wantsJSON(r) {
		writeJSON(w, v)
		return
	}
	writeHTML(w, "commit", struct {
		Source string
		Commit commitView
	}{s.source, v})
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2))
	return err == nil
}

type statusPage struct {
	Source string     `json:"sourceBranch,omitempty"`
	Gates  []gateView `json:"gates"`
}

func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func notFound(w http.ResponseWriter, msg string) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.Error(w, msg, http.StatusNotFound) // text/plain
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w) // escapes <, > and & too
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeHTML(w http.ResponseWriter, name string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	// Nothing runs on the page: no script, no frame, only its own style.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	_ = statusTemplates.ExecuteTemplate(w, name, data)
}

var statusTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"short": short7,
	"when":  func(t *time.Time) string { return t.Format(time.RFC3339) },
}).Parse(`
{{define "head"}}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.}} · Sluice</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
code,pre{font-family:ui-monospace,monospace}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
.passed{color:#176f2c}.failed,.error,.stopped,.retrying{color:#b00020}.pending{color:#8a6d00}
</style></head><body>{{end}}

{{define "verdict"}}<span class="{{.Verdict}}">{{.Verdict}}</span>{{if .Step}} ({{.Step}}){{end}}{{end}}

{{define "gates"}}{{template "head" "Status"}}
<h1>Sluice status</h1>
{{range .Gates}}
<h2 id="{{.Name}}">Gate {{.Name}}</h2>
<p>{{if .Path}}<code>{{.Path}}</code>: {{end}}{{if .Source}}<code>{{.Source}}</code> → {{end}}<code>{{.Target}}</code>
{{if .TargetTip}} at <code>{{short .TargetTip}}</code>{{end}}.
{{if .Queue}}Queue: {{.Queue}} commit(s).{{else if .QueueError}}Queue unknown: {{.QueueError}}{{end}}</p>
<p>State: <span class="{{.State}}">{{.State}}</span>{{if .LastDrain}}, last drain ended {{when .LastDrain}}{{end}}.</p>
{{if .Reason}}<pre>{{.Reason}}</pre>{{end}}
{{if .Testing}}<p>Under test:</p><ul>{{range .Testing}}<li><a href="/status/{{.Gate}}/{{.SHA}}"><code>{{short .SHA}}</code></a> {{.Subject}} — {{.Step}}</li>{{end}}</ul>{{end}}
{{if .Recent}}<table><tr><th>commit</th><th>subject</th><th>author</th><th>verdict</th><th>reason</th><th>when</th></tr>
{{range .Recent}}<tr><td><a href="/status/{{.Gate}}/{{.SHA}}"><code>{{short .SHA}}</code></a></td><td>{{.Subject}}</td><td>{{.Author}}</td>
<td>{{template "verdict" .}}{{if .Judged}}<br><small>{{.Judged}}</small>{{end}}</td><td>{{if .Reason}}<pre>{{.Reason}}</pre>{{end}}</td><td>{{if .At}}{{when .At}}{{end}}</td></tr>
{{end}}</table>{{else}}<p>No verdict since this process started.</p>{{end}}
{{end}}
<p><a href="/status?format=json">JSON</a></p></body></html>{{end}}

{{define "commit"}}{{template "head" (printf "%s %s" .Commit.Gate (short .Commit.SHA))}}
{{with .Commit}}
<h1>Commit <code>{{short .SHA}}</code> in gate <a href="/status#{{.Gate}}">{{.Gate}}</a></h1>
<table>
<tr><th>commit</th><td><code>{{.SHA}}</code></td></tr>
{{if .Subject}}<tr><th>subject</th><td>{{.Subject}}</td></tr>{{end}}
{{if .Author}}<tr><th>author</th><td>{{.Author}}</td></tr>{{end}}
<tr><th>verdict</th><td>{{template "verdict" .}}</td></tr>
{{if .Judged}}<tr><th>judged</th><td>{{.Judged}}{{if .JudgedDetail}} ({{.JudgedDetail}}){{end}}</td></tr>{{end}}
{{if .At}}<tr><th>when</th><td>{{when .At}}{{if .Took}}, took {{.Took}}{{end}}</td></tr>{{end}}
{{if .Revert}}<tr><th>reverted by</th><td><code>{{.Revert}}</code></td></tr>{{end}}
<tr><th>told by</th><td>{{.From}}</td></tr>
</table>
{{if .Reason}}<h2>Reason</h2><pre>{{.Reason}}</pre>{{end}}
<p><a href="/status/{{.Gate}}/{{.SHA}}?format=json">JSON</a> · <a href="/status">all gates</a></p>
{{end}}</body></html>{{end}}
`))
