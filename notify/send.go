package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// StatusError is a receiver's answer other than 2xx. The body is not kept:
// a receiver may echo the request, token included.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("receiver answered %d %s", e.Code, http.StatusText(e.Code))
}

// badRequest is a request that cannot be made (a URL that does not parse):
// no attempt will do better.
type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

// retryable reports whether another attempt may succeed: a server error,
// 408 or 429 may pass; any other 4xx or 3xx will not.
func (e *StatusError) retryable() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// deliver posts m to w until it is accepted, a final answer comes, the
// attempts are spent or ctx ends. It returns the attempts made.
func (n *Notifier) deliver(ctx context.Context, w Webhook, m Message) (int, error) {
	body, err := encode(w.Format, m)
	if err != nil {
		return 0, err
	}
	backoff := n.opts.InitialBackoff
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, w, body)
		if err == nil {
			return attempt, nil
		}
		var se *StatusError
		var bad badRequest
		if errors.As(err, &se) && !se.retryable() || errors.As(err, &bad) {
			return attempt, err
		}
		if attempt >= n.opts.Attempts {
			return attempt, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, fmt.Errorf("stopped after %d attempts: %w", attempt, err)
		case <-t.C:
		}
		backoff = min(2*backoff, n.opts.MaxBackoff)
	}
}

// post makes one attempt, bounded by Options.Timeout.
func (n *Notifier) post(ctx context.Context, w Webhook, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return badRequest{scrub(err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice")
	if w.Token != "" {
		if w.Header == "" {
			req.Header.Set("Authorization", "Bearer "+w.Token)
		} else {
			req.Header.Set(w.Header, w.Token)
		}
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return scrub(err)
	}
	defer resp.Body.Close()
	// Read a little so the connection can be reused; never more.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &StatusError{Code: resp.StatusCode}
	}
	return nil
}

// scrub drops the URL from an HTTP client error: net/http puts the whole
// URL (a Slack webhook's path is its secret) in every *url.Error.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timed out", ue.Op)
		}
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return errors.New("bad request")
}
