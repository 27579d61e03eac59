package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// What an open connection does with the bytes it reads.
const (
	forward = iota // pass them on
	swallow        // drop them: a black hole
	frozen         // read nothing more, ever: a peer that stopped answering
)

// tcpProxy forwards TCP connections to one address and breaks them on command.
type tcpProxy struct {
	ln       net.Listener
	upstream string

	mu        sync.Mutex
	conns     map[*tcpConn]struct{}
	blackhole bool // new connections are swallowed
	accepted  int
}

type tcpConn struct {
	client, server net.Conn // server is nil for a connection accepted into the black hole
	mu             sync.Mutex
	mode           int
	stop           chan struct{} // closed when the connection is reset
}

func newTCPProxy(ln net.Listener, upstream string) *tcpProxy {
	return &tcpProxy{ln: ln, upstream: upstream, conns: map[*tcpConn]struct{}{}}
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *tcpProxy) handle(client net.Conn) {
	p.mu.Lock()
	hole := p.blackhole
	p.accepted++
	p.mu.Unlock()
	conn := &tcpConn{client: client, mode: forward, stop: make(chan struct{})}
	if hole {
		conn.mode = swallow
	} else {
		server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			client.Close()
			return
		}
		conn.server = server
	}
	p.mu.Lock()
	p.conns[conn] = struct{}{}
	p.mu.Unlock()
	var done sync.WaitGroup
	done.Add(1)
	go func() { defer done.Done(); conn.pump(client, conn.server) }()
	if conn.server != nil {
		done.Add(1)
		go func() { defer done.Done(); conn.pump(conn.server, client) }()
	}
	done.Wait()
	conn.close()
	p.mu.Lock()
	delete(p.conns, conn)
	p.mu.Unlock()
}

// pump moves bytes from src to dst (nil: nowhere) as the connection's mode says.
func (c *tcpConn) pump(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		c.mu.Lock()
		mode := c.mode
		c.mu.Unlock()
		switch {
		case mode == frozen:
			<-c.stop // nothing moves, not even a close, until reset or exit
			return
		case mode == forward && n > 0 && dst != nil:
			if _, werr := dst.Write(buf[:n]); werr != nil {
				c.close()
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && err == io.EOF && mode == forward {
				// Half-close: the other direction may still carry an answer.
				_ = tc.CloseWrite()
				return
			}
			c.close()
			return
		}
	}
}

func (c *tcpConn) setMode(mode int) {
	c.mu.Lock()
	c.mode = mode
	c.mu.Unlock()
}

// reset closes both sides with RST.
func (c *tcpConn) reset() {
	for _, s := range []net.Conn{c.client, c.server} {
		if tc, ok := s.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	c.close()
}

func (c *tcpConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.client.Close()
	if c.server != nil {
		c.server.Close()
	}
}

func (p *tcpProxy) command(words []string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch words[0] {
	case "pass":
		p.blackhole = false
	case "reset":
		for c := range p.conns {
			c.reset()
		}
	case "blackhole":
		p.blackhole = true
		for c := range p.conns {
			c.setMode(swallow)
		}
	case "freeze":
		for c := range p.conns {
			c.setMode(frozen)
		}
	case "stats":
		return fmt.Sprintf("ok open=%d accepted=%d", len(p.conns), p.accepted)
	default:
		return "error unknown command " + words[0]
	}
	return "ok"
}
