package main

type serveCmd struct{}

func (serveCmd) Run(g *globals) error {
	return exitError{code: 3, msg: "serve is not implemented yet"}
}
