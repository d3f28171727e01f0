package testenv

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
)

// Step names, used in faults, in StepFunc and as the keys of the durations
// Test returns.
const (
	// StepNamespace is reported (to StepFunc only) when the test namespace
	// exists, before anything is applied in it.
	StepNamespace = "namespace"
	// StepWait is how long a test waited for a start (Cluster.SetStartLimit).
	StepWait = "wait"
	// StepOverlay: the rendered objects cannot be put into a test namespace.
	StepOverlay  = "overlay"
	StepApply    = "apply"
	StepHealth   = "health"
	StepTests    = "tests"
	StepCommands = "commands"
)

// Fault is an error that is the commit's fault: the API server rejects its
// objects, they are not healthy in time or a test fails. Anything else that
// goes wrong is the infrastructure's.
type Fault struct {
	Step string
	Msg  string
}

func (f *Fault) Error() string { return fmt.Sprintf("%s: %s", f.Step, f.Msg) }

// faultf returns a *Fault of step.
func faultf(step, format string, args ...any) error {
	return &Fault{Step: step, Msg: fmt.Sprintf(format, args...)}
}

// IsFault reports whether err is the commit's fault.
func IsFault(err error) bool {
	var f *Fault
	return errors.As(err, &f)
}

// NotOwnedError says a namespace Sluice would test in exists without
// Sluice's labels for the gate: it is neither used nor deleted, and a
// person has to look.
type NotOwnedError struct {
	Namespace string
}

func (e *NotOwnedError) Error() string {
	return fmt.Sprintf("namespace %s exists and is not Sluice's: refusing to use or delete it", e.Namespace)
}

// classify tells a refusal of the commit's objects (a *Fault) from an
// outage (any other error). An answer from a reachable cluster that is
// neither is an *UnrecognisedError: only a control run can tell whose fault it is.
func (k *Cluster) classify(ctx context.Context, step string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if IsFault(err) {
		return err
	}
	msg := trimAPIErr(err)
	switch {
	case meta.IsNoMatchError(err):
		return faultf(step, "%s", msg)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsRequestEntityTooLargeError(err), apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return faultf(step, "rejected by the API server: %s", msg)
	case apierrors.IsInternalError(err) && schemaError(msg) != "":
		// Server-side apply answers a value of the wrong type, an unknown
		// field or a wrong shape with 500 and no reason; the message names
		// the field. It is the object's fault on every cluster.
		return faultf(step, "rejected by the API server: %s", schemaError(msg))
	case apierrors.IsForbidden(err):
		return forbidden(step, err, msg) // rbac.go
	}
	if rerr := k.reachable(ctx); rerr != nil {
		return rerr
	}
	if answered(err) {
		return &UnrecognisedError{Step: step, Err: err}
	}
	return err
}

// typedPatch is how the API server words a schema error of server-side apply.
var typedPatch = regexp.MustCompile(`failed to create typed patch object \(([^)]*)\): (.+)`)

// schemaError returns "the object: field: problem" when msg is a schema
// error of server-side apply, with what Sluice said before it (the object).
func schemaError(msg string) string {
	m := typedPatch.FindStringSubmatchIndex(msg)
	if m == nil {
		return ""
	}
	before := strings.TrimSuffix(strings.TrimSpace(msg[:m[0]]), ":")
	before = strings.TrimSuffix(strings.TrimSuffix(before, " apply failed"), " dry-run failed")
	problem := msg[m[4]:m[5]]
	if before == "" {
		before = msg[m[2]:m[3]]
	}
	return fmt.Sprintf("%s: field %s (schema error: the object does not fit the kind's schema)", before, problem)
}

// answered reports whether err is an answer of the API server that is no
// sign of an outage or overload: not a timeout, throttling, unavailability,
// authentication, a missing object (the namespace may be going) or a
// broken connection.
func answered(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	switch {
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsUnauthorized(err), apierrors.IsNotFound(err),
		apierrors.IsGone(err), apierrors.IsResourceExpired(err), apierrors.IsUnexpectedServerError(err),
		apierrors.IsForbidden(err):
		return false
	}
	return true
}

// UnrecognisedError is an error answer of a cluster that is up, which
// Sluice cannot attribute by itself: the commit's objects or the cluster.
// The runner decides by a control run (reconcile runs the same step with the last passed candidate).
type UnrecognisedError struct {
	Step string
	Err  error
}

func isUnrecognised(err error) bool {
	var u *UnrecognisedError
	return errors.As(err, &u)
}

func (e *UnrecognisedError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }
func (e *UnrecognisedError) Unwrap() error { return e.Err }

// reachable returns an infrastructure error when the API server does not answer.
func (k *Cluster) reachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := k.discovery.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return fmt.Errorf("API server unreachable: %w", err)
	}
	return nil
}

func trimAPIErr(err error) string {
	return strings.TrimSpace(err.Error())
}
