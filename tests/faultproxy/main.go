// Command faultproxy stands between ruleop and the API server in the fault-injection tests
// and breaks the path on command. Standard library only, so CI builds it offline.
//
//	faultproxy tcp  --kubeconfig ADMIN --kubeconfig-out OPERATOR
//	faultproxy http --kubeconfig ADMIN --kubeconfig-out OPERATOR
//
// It reads the API server's address and credentials from ADMIN (inline credentials, as the
// local control plane writes them), listens on a free loopback port, writes OPERATOR (ADMIN
// pointed at the proxy), prints "listening ADDR" and then obeys one command per stdin line,
// answering each with one line, "ok ..." or "error ...". It exits when stdin closes.
//
// tcp mode forwards bytes (TLS passes through) and knows:
//
//	pass       new connections are forwarded again (ones already black-holed stay dead)
//	reset      every open connection is reset (RST); new ones pass
//	blackhole  every open and new connection swallows all bytes and answers nothing
//	freeze     every open connection stops moving bytes, forever; new ones pass
//	stats      "ok open=N accepted=N"
//
// http mode terminates TLS with its own certificate (written into OPERATOR), forwards each
// request with ADMIN's client certificate, and answers chosen requests itself:
//
//	fault CODE METHOD PATH-PREFIX [retry-after=SECONDS] [times=N]   -> "ok ID"
//	times ID   when fault ID answered, in ms since the epoch -> "ok T1 T2 ..."
//	clear      no more faults
//
// METHOD "*" matches any method. The first matching fault that has answers left answers.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "tcp" && os.Args[1] != "http") {
		fmt.Fprintln(os.Stderr, "usage: faultproxy tcp|http --kubeconfig ADMIN --kubeconfig-out OPERATOR")
		os.Exit(2)
	}
	mode := os.Args[1]
	flags := flag.NewFlagSet(mode, flag.ExitOnError)
	in := flags.String("kubeconfig", "", "the admin kubeconfig (inline credentials)")
	out := flags.String("kubeconfig-out", "", "where to write the kubeconfig that goes through the proxy")
	_ = flags.Parse(os.Args[2:])
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "--kubeconfig and --kubeconfig-out are required")
		os.Exit(2)
	}
	if err := run(mode, *in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
}

// handler obeys one command line and returns the answer line.
type handler func(words []string) string

func run(mode, in, out string) error {
	kc, err := readKubeconfig(in)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	var handle handler
	caData := kc.caData
	switch mode {
	case "tcp":
		p := newTCPProxy(ln, kc.hostPort())
		go p.serve()
		handle = p.command
	case "http":
		p, cert, err := newHTTPProxy(ln, kc)
		if err != nil {
			return err
		}
		caData = cert
		go p.serve()
		handle = p.command
	}
	if err := kc.writeThrough(out, "https://"+addr, caData); err != nil {
		return err
	}
	fmt.Printf("listening %s\n", addr)
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		words := strings.Fields(lines.Text())
		if len(words) == 0 {
			continue
		}
		fmt.Println(handle(words))
	}
	return nil
}
