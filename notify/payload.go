package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Payload is the body of a JSON webhook.
type Payload struct {
	// Kind is "failed" or "stopped".
	Kind Kind   `json:"kind"`
	Gate string `json:"gate"`
	// Commit, Subject and Author are set for a failed commit.
	Commit  string  `json:"commit,omitempty"`
	Subject string  `json:"subject,omitempty"`
	Author  *Person `json:"author,omitempty"`
	Reason  string  `json:"reason"`
	// RevertCommit is the revert Sluice pushed, if any.
	RevertCommit string    `json:"revertCommit,omitempty"`
	Time         time.Time `json:"time"`
	// Text is the message in one line of prose, as the Slack format says it.
	Text string `json:"text"`
}

// Bounds on what a commit's author controls, so one hostile subject cannot
// make every message huge.
const (
	maxSubject = 200
	maxReason  = 2000
	maxName    = 200
)

func encode(f Format, m Message) ([]byte, error) {
	m.Subject = clip(m.Subject, maxSubject)
	m.Reason = clip(m.Reason, maxReason)
	m.Author.Name = clip(m.Author.Name, maxName)
	m.Author.Email = clip(m.Author.Email, maxName)
	switch f {
	case Slack:
		return json.Marshal(struct {
			Text string `json:"text"`
		}{slackText(m)})
	case JSON, "":
		p := Payload{
			Kind: m.Kind, Gate: m.Gate, Commit: m.Commit, Subject: m.Subject,
			Reason: m.Reason, RevertCommit: m.RevertCommit, Time: m.Time, Text: text(m, plain),
		}
		if m.Author != (Person{}) {
			p.Author = &m.Author
		}
		return json.Marshal(p)
	}
	return nil, fmt.Errorf("unknown format %q", f)
}

// slackText is the message in Slack's mrkdwn, with every value escaped: a
// commit subject cannot mention @channel or make a link.
func slackText(m Message) string { return text(m, slackEscape) }

func text(m Message, esc func(string) string) string {
	var b strings.Builder
	switch m.Kind {
	case Failed:
		fmt.Fprintf(&b, "Sluice gate %s: commit %s %q by %s failed", esc(m.Gate), esc(short(m.Commit)), esc(m.Subject), esc(author(m.Author)))
		if m.RevertCommit != "" {
			fmt.Fprintf(&b, " and was reverted by %s", esc(short(m.RevertCommit)))
		}
		fmt.Fprintf(&b, ".\nReason: %s", esc(m.Reason))
	case Stopped:
		fmt.Fprintf(&b, "Sluice gate %s stopped and needs a person.\nReason: %s", esc(m.Gate), esc(m.Reason))
	default:
		fmt.Fprintf(&b, "Sluice gate %s: %s: %s", esc(m.Gate), esc(string(m.Kind)), esc(m.Reason))
	}
	return b.String()
}

func author(p Person) string {
	switch {
	case p.Name != "" && p.Email != "":
		return p.Name + " <" + p.Email + ">"
	case p.Name != "":
		return p.Name
	case p.Email != "":
		return "<" + p.Email + ">"
	}
	return "unknown"
}

func plain(s string) string { return s }

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
