package main

import (
	"errors"
	"strings"

	"github.com/tei-sidecar/tei-sidecar/compose"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// composeCmd prints a Docker Compose file that declares TEI's services as
// planned for this machine, with the sidecar proxying to them: for people
// who will not mount the Docker socket into the sidecar.
type composeCmd struct {
	Settings plan.Settings `embed:""`

	SidecarImage string `name:"sidecar-image" env:"SIDECAR_IMAGE" default:"tei-sidecar:local" help:"The sidecar's image in the file."`
	NoSidecar    bool   `name:"no-sidecar" help:"Print TEI's services and the model cache volume only."`
}

func (c *composeCmd) Run(g *globals) error {
	_, res, err := detectAndPlan(g, c.Settings)
	if err != nil {
		return err
	}
	f, err := compose.Build(res, compose.Options{SidecarImage: c.SidecarImage, NoSidecar: c.NoSidecar})
	if errors.Is(err, compose.ErrNative) {
		return exitError{code: 2, msg: err.Error()}
	}
	if err != nil {
		return err
	}
	if keys := compose.SecretKeys(res); len(keys) > 0 {
		g.log.Info("the file refers to secrets by name: set them where compose runs (the shell or .env)", "variables", strings.Join(keys, ","))
	}
	return compose.Write(g.stdout, res, f)
}
