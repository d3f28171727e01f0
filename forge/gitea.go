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
