package main

type detectCmd struct{}

func (detectCmd) Run(g *globals) error {
	return exitError{code: 3, msg: "detect is not implemented yet"}
}
