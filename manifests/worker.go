package manifests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// A render runs kustomize in a process of its own, the render worker: the
// same binary started again with workerEnv set, which MaybeRunWorker turns
// into a worker before main does anything else. The daemon sends it the
// checked files on stdin and reads the rendered objects back on stdout. The
// worker bounds its own memory (a soft limit for the garbage collector, a
// watchdog that exits with exitMemory above MaxRenderMemory, and an address
// space limit for one huge allocation); the daemon kills it at
// RenderTimeout, or when the render is cancelled. Kustomize's global state
// dies with the worker, so renders no longer wait for one another to reset
// it; they still run one at a time so that the daemon's memory is bounded by
// one render's budget.
const (
	workerEnv   = "SLUICE_RENDER_WORKER"
	workerMagic = "sluice-render-worker/1\n"
	// exitMemory is the worker's exit code when its watchdog finds it
	// above its memory budget.
	exitMemory = 3
	// watchdogPeriod is how often the worker looks at its memory.
	watchdogPeriod = 10 * time.Millisecond
)

// workerRequest is what the daemon sends a render worker.
type workerRequest struct {
	Dir        string
	Files      map[string][]byte // tree path -> content, all checked
	MaxObjects int
	MaxMemory  int64
}

// workerResponse is what a render worker sends back.
type workerResponse struct {
	Objects [][]byte // JSON, in kustomize's order
	Err     *workerError
}

type workerError struct {
	Path, Reason, Err string
}

// buildSlot lets one render run at a time, so that the daemon's memory is
// bounded by one render's budget. It is a channel rather than a mutex so
// that waiting for it honours ctx; a render frees it only once its worker
// has exited.
var buildSlot = make(chan struct{}, 1)

// afterWorkerStart, when set by a test, is called once a worker runs.
var afterWorkerStart func()

// MaybeRunWorker turns the process into a render worker when it was started
// as one, and returns otherwise. Every binary that calls Render must call it
// first thing in main (and test binaries in TestMain): Render starts the
// running executable again as its worker.
func MaybeRunWorker() {
	if os.Getenv(workerEnv) != "1" {
		return
	}
	os.Exit(runWorker(os.Stdin, os.Stdout, os.Stderr))
}

// renderInWorker runs kustomize build of dir over files in a render worker
// and returns the rendered objects as JSON.
func renderInWorker(ctx context.Context, files map[string][]byte, dir string, opts RenderOptions) ([][]byte, error) {
	select {
	case buildSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-buildSlot }()

	exe, err := executable()
	if err != nil {
		return nil, fmt.Errorf("render worker: %w", err)
	}
	runCtx, cancel := context.WithTimeout(ctx, opts.RenderTimeout)
	defer cancel()
	// -test.run keeps a test binary that forgot MaybeRunWorker from running
	// its tests again; sluice itself never gets that far.
	cmd := exec.CommandContext(runCtx, exe, "-test.run=^$")
	// No PATH, no HOME, no proxy: nothing to run and nowhere to go.
	cmd.Env = []string{workerEnv + "=1"}
	cmd.SysProcAttr = workerSysProcAttr()
	cmd.WaitDelay = time.Second
	var stdout limitedBuffer
	stdout.max = opts.MaxOutputSize + 1<<20
	stderr := headBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		pr.Close()
		return nil, fmt.Errorf("start render worker %s: %w", exe, err)
	}
	if afterWorkerStart != nil {
		afterWorkerStart()
	}
	go func() {
		pw.CloseWithError(gob.NewEncoder(pw).Encode(workerRequest{
			Dir: dir, Files: files, MaxObjects: opts.MaxObjects, MaxMemory: opts.MaxRenderMemory,
		}))
	}()
	waitErr := cmd.Wait()
	pr.Close()

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if errors.Is(runCtx.Err(), context.DeadlineExceeded) {
		return nil, &RenderError{Reason: fmt.Sprintf("the render exceeded the time limit of %s", opts.RenderTimeout)}
	}
	if stdout.overflow {
		return nil, &RenderError{Reason: fmt.Sprintf("the rendered objects exceed the limit of %d bytes", opts.MaxOutputSize)}
	}
	out := stdout.Bytes()
	if !bytes.HasPrefix(out, []byte(workerMagic)) {
		// The binary is not a render worker: a wiring fault, not the commit's.
		return nil, fmt.Errorf("render worker %s did not answer (does its main call manifests.MaybeRunWorker?): %v: %s", exe, waitErr, stderr.String())
	}
	memErr := &RenderError{Reason: fmt.Sprintf("the render exceeded the memory limit of %d MiB", opts.MaxRenderMemory>>20)}
	if waitErr != nil {
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			if ee.ExitCode() == exitMemory || strings.Contains(stderr.String(), "out of memory") {
				return nil, memErr
			}
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				// Not killed by us: the kernel's out-of-memory killer.
				return nil, memErr
			}
		}
		return nil, &RenderError{Reason: "the render crashed", Err: errors.New(crashLine(stderr.String(), waitErr))}
	}
	var resp workerResponse
	if err := gob.NewDecoder(bytes.NewReader(out[len(workerMagic):])).Decode(&resp); err != nil {
		return nil, &RenderError{Reason: "the render worker's answer is unreadable", Err: err}
	}
	if e := resp.Err; e != nil {
		re := &RenderError{Path: e.Path, Reason: e.Reason}
		if e.Err != "" {
			re.Err = errors.New(e.Err)
		}
		return nil, re
	}
	return resp.Objects, nil
}

// executable is the running binary: /proc/self/exe where there is one, so
// that a binary replaced on disk during an upgrade still starts itself.
func executable() (string, error) {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe", nil
	}
	return os.Executable()
}

// crashLine picks the line of a crashed worker's stderr that says why.
func crashLine(stderr string, waitErr error) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			return l
		}
	}
	return waitErr.Error()
}

// runWorker is the render worker: it reads one request, renders it and
// writes the response. It returns the process's exit code.
func runWorker(stdin io.Reader, stdout, stderr io.Writer) int {
	// The magic goes out at once: it tells the daemon that whatever
	// happens next happened to a render.
	if _, err := io.WriteString(stdout, workerMagic); err != nil {
		return 1
	}
	w := bufio.NewWriter(stdout)
	var req workerRequest
	if err := gob.NewDecoder(stdin).Decode(&req); err != nil {
		fmt.Fprintf(stderr, "render worker: read request: %v\n", err)
		return 1
	}
	limitMemory(req.MaxMemory, stderr)
	refuseNetwork()

	resp := workerResponse{}
	mem := filesys.MakeFsInMemory()
	var err error
	for p, data := range req.Files {
		if err = mem.WriteFile(path.Join("/", p), data); err != nil {
			err = &RenderError{Path: p, Reason: "cannot be put into kustomize's in-memory file system", Err: err}
			break
		}
	}
	req.Files = nil
	if err == nil {
		resp.Objects, err = build(mem, req.Dir, req.MaxObjects)
	}
	if err != nil {
		var re *RenderError
		if !errors.As(err, &re) {
			re = &RenderError{Reason: "kustomize build", Err: err}
		}
		resp.Err = &workerError{Path: re.Path, Reason: re.Reason}
		if re.Err != nil {
			resp.Err.Err = re.Err.Error()
		}
		resp.Objects = nil
	}
	if err := gob.NewEncoder(w).Encode(resp); err != nil {
		fmt.Fprintf(stderr, "render worker: write response: %v\n", err)
		return 1
	}
	if err := w.Flush(); err != nil {
		return 1
	}
	return 0
}

// limitMemory bounds the worker's memory: the garbage collector works hard
// from three quarters of max on, a watchdog exits with exitMemory above max,
// and the address space is capped well above it so that one huge allocation
// fails at once rather than after the watchdog's next look.
func limitMemory(max int64, stderr io.Writer) {
	if max <= 0 {
		return
	}
	debug.SetMemoryLimit(max / 4 * 3)
	limitAddressSpace(max)
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	go func() {
		for {
			metrics.Read(samples)
			used := int64(samples[0].Value.Uint64() - samples[1].Value.Uint64())
			if used > max {
				fmt.Fprintf(stderr, "render worker: %d bytes in use, above the limit of %d\n", used, max)
				os.Exit(exitMemory)
			}
			time.Sleep(watchdogPeriod)
		}
	}()
	runtime.Gosched()
}

// refuseNetwork leaves kustomize no HTTP transport: it fetches a file field
// that holds an http(s) URL with a zero http.Client, that is, with
// http.DefaultTransport. The loader refuses such fields before kustomize
// runs; this makes sure that a field it missed still sends nothing.
func refuseNetwork() {
	http.DefaultTransport = refusingTransport{}
	http.DefaultClient = &http.Client{Transport: refusingTransport{}}
}

// errNetworkRefused is what a render's HTTP request gets.
var errNetworkRefused = errors.New("a render may not use the network")

type refusingTransport struct{}

func (refusingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return nil, errNetworkRefused
}

// limitedBuffer keeps up to max bytes and refuses more.
type limitedBuffer struct {
	bytes.Buffer
	max      int64
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len()+len(p)) > b.max {
		b.overflow = true
		return 0, errors.New("render worker output too large")
	}
	return b.Buffer.Write(p)
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	buf []byte
	max int
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *headBuffer) String() string { return string(b.buf) }
