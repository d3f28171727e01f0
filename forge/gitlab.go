package forge

import (
	"context"
	"errors"
	"net/http"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

type gitlabForge struct {
	c    *gitlab.Client
	base string
	repo string
}

func newGitLab(o Options) (Forge, error) {
	if o.Repository == "" || strings.HasPrefix(o.Repository, "/") || strings.HasSuffix(o.Repository, "/") || !strings.Contains(o.Repository, "/") {
		return nil, errors.New("forge: repository " + o.Repository + ": want group/name")
	}
	// Retries are the Poster's, which knows that a newer status replaces
	// an older one; the SDK's own would retry a stale status.
	c, err := gitlab.NewClient(o.Token, gitlab.WithBaseURL(o.URL), gitlab.WithHTTPClient(o.HTTPClient), gitlab.WithoutRetries())
	if err != nil {
		return nil, err
	}
	return &gitlabForge{c: c, base: strings.TrimSuffix(o.URL, "/"), repo: o.Repository}, nil
}

func (f *gitlabForge) Name() string { return "gitlab " + f.base + " " + f.repo }

// gitlabStates maps a state to GitLab's: it has no "failure" or "error",
// only "failed" (an error is posted as pending by Sluice, with its reason).
var gitlabStates = map[State]gitlab.BuildStateValue{
	Pending: gitlab.Pending,
	Success: gitlab.Success,
	Failure: gitlab.Failed,
	Error:   gitlab.Failed,
}

func (f *gitlabForge) SetStatus(ctx context.Context, s Status) error {
	opt := &gitlab.SetCommitStatusOptions{
		State:       gitlabStates[s.State],
		Name:        gitlab.Ptr(s.Context),
		Description: gitlab.Ptr(Truncate(s.Description, MaxDescription)),
	}
	if s.TargetURL != "" {
		opt.TargetURL = gitlab.Ptr(s.TargetURL)
	}
	_, resp, err := f.c.Commits.SetCommitStatus(f.repo, s.Commit, opt, gitlab.WithContext(ctx))
	var er *gitlab.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		// GitLab refuses a state the status already has ("Cannot transition
		// status via :enqueue from :pending"): it is set, which is the point.
		if er.Response.StatusCode == http.StatusBadRequest && strings.Contains(er.Message, "Cannot transition status") {
			return nil
		}
		return answer(f.Name(), s.Context, er.Response.StatusCode, er.Message)
	}
	if err != nil && resp != nil && resp.Response != nil {
		// The SDK answers 404 with its own ErrNotFound, without the body.
		return answer(f.Name(), s.Context, resp.StatusCode, err.Error())
	}
	if err != nil {
		return err
	}
	return answer(f.Name(), s.Context, resp.StatusCode, "")
}

func (f *gitlabForge) PullRequests(ctx context.Context, base string, max int) ([]PullRequest, error) {
	max = min(max, MaxPullRequests)
	if max <= 0 {
		return nil, nil
	}
	mrs, resp, err := f.c.MergeRequests.ListProjectMergeRequests(f.repo, &gitlab.ListProjectMergeRequestsOptions{
		ListOptions:  gitlab.ListOptions{PerPage: int64(max)},
		State:        gitlab.Ptr("opened"),
		TargetBranch: gitlab.Ptr(base),
		OrderBy:      gitlab.Ptr("updated_at"),
		Sort:         gitlab.Ptr("desc"),
	}, gitlab.WithContext(ctx))
	var er *gitlab.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return nil, listAnswer(f.Name(), er.Response.StatusCode, er.Message)
	}
	if err != nil && resp != nil && resp.Response != nil {
		return nil, listAnswer(f.Name(), resp.StatusCode, err.Error())
	}
	if err != nil {
		return nil, err
	}
	var out []PullRequest
	for _, mr := range mrs {
		if mr == nil || mr.TargetBranch != base || len(out) >= max {
			continue
		}
		p, err := pull(f.Name(), mr.IID, mr.SHA, "refs/merge-requests/%d/head")
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
