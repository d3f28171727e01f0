// Package notify tells people, through webhooks, that a commit failed a gate
// or that a gate stopped: generic JSON or Slack-compatible messages.
//
// It never blocks its caller and never logs: Notify only puts the message in
// each webhook's bounded queue (dropping the oldest when it is full), and
// one goroutine per webhook posts it, retrying with exponential backoff a
// bounded number of times. What happened to each message is handed to
// Options.Report for the caller to log. A webhook's URL and token are
// secrets: no error, report or String of a Webhook contains them.
package notify

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Kind is what a message is about.
type Kind string

const (
	// Failed: a commit's verdict was failed.
	Failed Kind = "failed"
	// Stopped: a gate stopped and needs a person.
	Stopped Kind = "stopped"
)

// Format is the shape of the body posted to a webhook.
type Format string

const (
	// JSON is Sluice's own object (see Payload).
	JSON Format = "json"
	// Slack is {"text": "..."}, which Slack, Mattermost, Rocket.Chat and
	// Google Chat incoming webhooks accept.
	Slack Format = "slack"
)

// Message is one thing to tell.
type Message struct {
	Kind Kind
	Gate string
	// Commit, Subject and Author describe the failed commit; Commit is the
	// full hash. Empty for a stopped gate.
	Commit, Subject string
	Author          Person
	// Reason is why the commit failed or the gate stopped.
	Reason string
	// RevertCommit is the revert Sluice pushed for a failed commit, if any.
	RevertCommit string
	// Time is when it happened.
	Time time.Time
}

// Person is a commit's author.
type Person struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Webhook is one receiver.
type Webhook struct {
	// Name identifies the webhook in reports and errors; it must not hold
	// a secret (the config's "notify[0] (host)").
	Name string
	// URL is where messages are posted (http or https); it may hold a
	// secret (Slack's do) and is never shown.
	URL    string
	Format Format
	// On lists the kinds sent; empty means all.
	On []Kind
	// Header and Token, when Token is set, are sent as "Header: Token";
	// with Header empty, as "Authorization: Bearer Token".
	Header string
	Token  string
}

// String names the webhook without its URL or token.
func (w Webhook) String() string { return w.Name }

// GoString is String, so %#v shows no secret either.
func (w Webhook) GoString() string { return w.Name }

func (w Webhook) wants(k Kind) bool { return len(w.On) == 0 || slices.Contains(w.On, k) }

// Options bound the delivery.
type Options struct {
	// Attempts is how many times a message is posted before it is given up.
	Attempts int
	// InitialBackoff doubles after each failed attempt up to MaxBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// Timeout bounds one attempt, the receiver's answer included.
	Timeout time.Duration
	// QueueSize is how many messages wait per webhook; beyond it the
	// oldest is dropped.
	QueueSize int
	// Client posts the messages; nil uses one that follows no redirect (a
	// redirect could carry the token header to another host).
	Client *http.Client
	// Report, if set, is told the outcome of every message and every drop.
	// It is called from the webhook's goroutine, and from Notify for a
	// drop; it must be quick and safe for concurrent use.
	Report func(Report)
}

// DefaultOptions are five attempts over about half a minute, ten seconds
// each, and a hundred waiting messages per webhook.
func DefaultOptions() Options {
	return Options{
		Attempts:       5,
		InitialBackoff: 2 * time.Second,
		MaxBackoff:     time.Minute,
		Timeout:        10 * time.Second,
		QueueSize:      100,
	}
}

// Report is the outcome of one message at one webhook, or of a drop.
type Report struct {
	// Webhook is the webhook's Name.
	Webhook string
	Message Message
	// Attempts made; zero for a drop.
	Attempts int
	// Err is nil when the receiver accepted the message. It never holds
	// the URL or the token.
	Err error
	// Dropped is how many messages this webhook has dropped so far, set
	// when Message was just dropped because the queue was full.
	Dropped int
}

// Notifier posts messages to its webhooks.
type Notifier struct {
	opts  Options
	hooks []*hook

	ctx    context.Context // cancelled when Close gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

type hook struct {
	w       Webhook
	wake    chan struct{} // one pending wake-up
	mu      sync.Mutex
	queue   []Message
	dropped int
	closing bool
}

// New starts one sender per webhook. Zero fields of opts take
// DefaultOptions' values. Close stops them.
func New(hooks []Webhook, opts Options) *Notifier {
	d := DefaultOptions()
	if opts.Attempts <= 0 {
		opts.Attempts = d.Attempts
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = d.InitialBackoff
	}
	if opts.MaxBackoff < opts.InitialBackoff {
		opts.MaxBackoff = max(d.MaxBackoff, opts.InitialBackoff)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = d.Timeout
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = d.QueueSize
	}
	if opts.Client == nil {
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	n := &Notifier{opts: opts}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, w := range hooks {
		h := &hook{w: w, wake: make(chan struct{}, 1)}
		n.hooks = append(n.hooks, h)
		n.wg.Add(1)
		go n.send(h)
	}
	return n
}

// Notify queues m for every webhook that wants its kind and returns at once.
// After Close it does nothing.
func (n *Notifier) Notify(m Message) {
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	m.Time = m.Time.UTC()
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return
	}
	for _, h := range n.hooks {
		if !h.w.wants(m.Kind) {
			continue
		}
		h.mu.Lock()
		var drop *Report
		if len(h.queue) >= n.opts.QueueSize {
			h.dropped++
			drop = &Report{Webhook: h.w.Name, Message: h.queue[0], Dropped: h.dropped}
			h.queue = slices.Delete(h.queue, 0, 1)
		}
		h.queue = append(h.queue, m)
		h.mu.Unlock()
		select {
		case h.wake <- struct{}{}:
		default:
		}
		if drop != nil {
			n.report(*drop)
		}
	}
}

// Close stops taking messages and waits until the queued ones are sent or
// given up, or ctx ends; then it abandons the rest.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	for _, h := range n.hooks {
		h.mu.Lock()
		h.closing = true
		h.mu.Unlock()
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return ctx.Err()
	}
}

func (n *Notifier) report(r Report) {
	if n.opts.Report != nil {
		n.opts.Report(r)
	}
}

// send is h's goroutine: it posts h's messages one by one, oldest first.
func (n *Notifier) send(h *hook) {
	defer n.wg.Done()
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			closing := h.closing
			h.mu.Unlock()
			if closing {
				return
			}
			select {
			case <-h.wake:
			case <-n.ctx.Done():
				return
			}
			continue
		}
		m := h.queue[0]
		h.queue = slices.Delete(h.queue, 0, 1)
		h.mu.Unlock()
		if n.ctx.Err() != nil {
			return
		}
		attempts, err := n.deliver(n.ctx, h.w, m)
		n.report(Report{Webhook: h.w.Name, Message: m, Attempts: attempts, Err: err})
	}
}
