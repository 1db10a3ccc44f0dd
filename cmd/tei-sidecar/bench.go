package main

type benchCmd struct{}

func (benchCmd) Run(g *globals) error {
	return exitError{code: 3, msg: "bench is not implemented yet"}
}
