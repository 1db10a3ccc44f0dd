package launch

import (
	"net"
	"strconv"
	"sync"
)

// portBook gives each replica (by name) one loopback port for the
// sidecar's life, so its URL, which the proxy was built with before TEI
// started, stays valid across restarts. While no TEI listens on a port the
// book holds it with a listener of its own, which closes whatever connects
// (callers see a reset, not a hang), so that no other program takes the
// port meanwhile; release lets go of it just before TEI binds it, hold
// takes it back once TEI has exited. A port can still be lost in the
// instant between release and TEI's bind: that start then fails, and is
// retried on the same port. Safe for concurrent use.
type portBook struct {
	mu    sync.Mutex
	ports map[string]*bookedPort
	wg    sync.WaitGroup // the holders' accept loops
}

// bookedPort is one replica's port; ln is the book's listener while the
// book holds it, nil while TEI has it.
type bookedPort struct {
	port int
	ln   net.Listener
}

// reserve returns name's port: the one it has, or a free one, held.
func (b *portBook) reserve(name string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bp, ok := b.ports[name]; ok {
		return bp.port, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	bp := &bookedPort{port: ln.Addr().(*net.TCPAddr).Port}
	b.holdLocked(bp, ln)
	if b.ports == nil {
		b.ports = map[string]*bookedPort{}
	}
	b.ports[name] = bp
	return bp.port, nil
}

// assign books port for name without holding it: a running TEI the
// sidecar adopts listens there.
func (b *portBook) assign(name string, port int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bp, ok := b.ports[name]; ok {
		if bp.port == port {
			return
		}
		b.releaseLocked(bp)
	}
	if b.ports == nil {
		b.ports = map[string]*bookedPort{}
	}
	b.ports[name] = &bookedPort{port: port}
}

// lookup returns name's port, if it has one.
func (b *portBook) lookup(name string) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bp, ok := b.ports[name]
	if !ok {
		return 0, false
	}
	return bp.port, true
}

// release lets go of name's port: TEI is about to bind it.
func (b *portBook) release(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bp, ok := b.ports[name]; ok {
		b.releaseLocked(bp)
	}
}

// hold takes name's port back once TEI no longer listens there. It is
// best effort: when the port cannot be bound (TEI's socket is still
// closing, or another program took it) the next start finds out.
func (b *portBook) hold(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bp, ok := b.ports[name]
	if !ok || bp.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(bp.port))
	if err != nil {
		return
	}
	b.holdLocked(bp, ln)
}

// close lets go of every port and waits for the holders to end.
func (b *portBook) close() {
	b.mu.Lock()
	for _, bp := range b.ports {
		b.releaseLocked(bp)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *portBook) holdLocked(bp *bookedPort, ln net.Listener) {
	bp.ln = ln
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by release
			}
			_ = c.Close()
		}
	})
}

func (b *portBook) releaseLocked(bp *bookedPort) {
	if bp.ln != nil {
		_ = bp.ln.Close()
		bp.ln = nil
	}
}
