package forge

import (
	"context"
	"net/http"

	"code.gitea.io/sdk/gitea"
)

type giteaForge struct {
	url, owner, repo string
	opts             []gitea.ClientOption
}

func newGitea(o Options) (Forge, error) {
	owner, repo, err := ownerName(o.Repository)
	if err != nil {
		return nil, err
	}
	return &giteaForge{
		url: o.URL, owner: owner, repo: repo,
		// The version is given so that the SDK does not ask the server for
		// it in NewClient, which would be a request without a context.
		opts: []gitea.ClientOption{gitea.SetToken(o.Token), gitea.SetHTTPClient(o.HTTPClient), gitea.SetGiteaVersion("")},
	}, nil
}

func (f *giteaForge) Name() string { return "gitea " + f.url + " " + f.owner + "/" + f.repo }

func (f *giteaForge) SetStatus(ctx context.Context, s Status) error {
	// The SDK takes its context per client, so each call gets its own.
	c, err := gitea.NewClient(f.url, append(f.opts, gitea.SetContext(ctx))...)
	if err != nil {
		return err
	}
	_, resp, err := c.CreateStatus(f.owner, f.repo, s.Commit, gitea.CreateStatusOption{
		State:       gitea.StatusState(s.State),
		TargetURL:   s.TargetURL,
		Description: Truncate(s.Description, MaxDescription),
		Context:     s.Context,
	})
	if err != nil && resp != nil && resp.Response != nil {
		return answer(f.Name(), s.Context, resp.StatusCode, err.Error())
	}
	if err != nil {
		return err
	}
	if resp != nil && resp.Response != nil && resp.StatusCode != http.StatusCreated {
		return answer(f.Name(), s.Context, resp.StatusCode, "")
	}
	return nil
}

// giteaPageSize and giteaPages bound the pages of open pull requests read
// to find those into one base: Gitea's list has no filter by base branch.
const (
	giteaPageSize = 50
	giteaPages    = 5
)

func (f *giteaForge) PullRequests(ctx context.Context, base string, max int) ([]PullRequest, error) {
	max = min(max, MaxPullRequests)
	if max <= 0 {
		return nil, nil
	}
	c, err := gitea.NewClient(f.url, append(f.opts, gitea.SetContext(ctx))...)
	if err != nil {
		return nil, err
	}
	var out []PullRequest
	for page := 1; page <= giteaPages && len(out) < max; page++ {
		prs, resp, err := c.ListRepoPullRequests(f.owner, f.repo, gitea.ListPullRequestsOptions{
			ListOptions: gitea.ListOptions{Page: page, PageSize: giteaPageSize},
			State:       gitea.StateOpen,
			Sort:        "recentupdate",
		})
		if err != nil && resp != nil && resp.Response != nil {
			return nil, listAnswer(f.Name(), resp.StatusCode, err.Error())
		}
		if err != nil {
			return nil, err
		}
		for _, pr := range prs {
			if pr == nil || pr.Base == nil || pr.Base.Ref != base || pr.Head == nil || len(out) >= max {
				continue
			}
			p, err := pull(f.Name(), pr.Index, pr.Head.Sha, "refs/pull/%d/head")
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		if len(prs) < giteaPageSize {
			break
		}
	}
	return out, nil
}
