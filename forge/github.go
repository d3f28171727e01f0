package forge

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-github/v84/github"
)

type githubForge struct {
	c           *github.Client
	base        string
	owner, repo string
}

func newGitHub(o Options) (Forge, error) {
	owner, repo, err := ownerName(o.Repository)
	if err != nil {
		return nil, err
	}
	// URL is the API's root as given: go-github's WithEnterpriseURLs would
	// add /api/v3 to any address, api.github.com's included.
	base, err := url.Parse(strings.TrimSuffix(o.URL, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("forge: url: %w", err)
	}
	c := github.NewClient(o.HTTPClient).WithAuthToken(o.Token)
	c.BaseURL = base
	return &githubForge{c: c, base: strings.TrimSuffix(o.URL, "/"), owner: owner, repo: repo}, nil
}

func (f *githubForge) Name() string { return "github " + f.base + " " + f.owner + "/" + f.repo }

func (f *githubForge) SetStatus(ctx context.Context, s Status) error {
	st := github.RepoStatus{
		State:       github.Ptr(string(s.State)),
		Context:     github.Ptr(s.Context),
		Description: github.Ptr(Truncate(s.Description, MaxDescription)),
	}
	if s.TargetURL != "" {
		st.TargetURL = github.Ptr(s.TargetURL)
	}
	_, resp, err := f.c.Repositories.CreateStatus(ctx, f.owner, f.repo, s.Commit, st)
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return answer(f.Name(), s.Context, er.Response.StatusCode, er.Message)
	}
	if err != nil {
		return err
	}
	return answer(f.Name(), s.Context, resp.StatusCode, "")
}

func (f *githubForge) PullRequests(ctx context.Context, base string, max int) ([]PullRequest, error) {
	max = min(max, MaxPullRequests)
	if max <= 0 {
		return nil, nil
	}
	prs, resp, err := f.c.PullRequests.List(ctx, f.owner, f.repo, &github.PullRequestListOptions{
		State: "open", Base: base, Sort: "updated", Direction: "desc",
		ListOptions: github.ListOptions{PerPage: max},
	})
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return nil, listAnswer(f.Name(), er.Response.StatusCode, er.Message)
	}
	if err != nil {
		return nil, err
	}
	if err := listAnswer(f.Name(), resp.StatusCode, ""); err != nil {
		return nil, err
	}
	var out []PullRequest
	for _, pr := range prs {
		if pr.GetBase().GetRef() != base || len(out) >= max {
			continue
		}
		p, err := pull(f.Name(), int64(pr.GetNumber()), pr.GetHead().GetSHA(), "refs/pull/%d/head")
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
