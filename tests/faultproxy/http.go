package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fault is one answer the proxy gives instead of the API server.
type fault struct {
	id         int
	code       int
	method     string  // "*" for any
	prefix     string  // of the URL path
	retryAfter int     // seconds; 0: no header
	left       int     // answers left; -1: unlimited
	answered   []int64 // when it answered, in ms since the epoch
}

func (f *fault) matches(r *http.Request) bool {
	return (f.method == "*" || f.method == r.Method) &&
		strings.HasPrefix(r.URL.Path, f.prefix) && f.left != 0
}

// httpProxy terminates TLS, forwards requests with the admin credentials and answers the
// ones a fault matches itself.
type httpProxy struct {
	server  *http.Server
	ln      net.Listener
	forward *httputil.ReverseProxy

	mu     sync.Mutex
	faults []*fault
	nextID int
}

func newHTTPProxy(ln net.Listener, kc *kubeconfig) (*httpProxy, []byte, error) {
	upstream, err := url.Parse(kc.server)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(kc.caData) {
		return nil, nil, fmt.Errorf("no CA certificate in the kubeconfig")
	}
	client, err := tls.X509KeyPair(kc.certData, kc.keyData)
	if err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	serving, certPEM, err := selfSigned()
	if err != nil {
		return nil, nil, err
	}
	p := &httpProxy{ln: ln}
	p.forward = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Host = upstream.Host
		},
		Transport:     transport,
		FlushInterval: -1, // watches stream
	}
	p.server = &http.Server{
		Handler:   p,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serving}},
	}
	return p, certPEM, nil
}

func (p *httpProxy) serve() {
	_ = p.server.ServeTLS(p.ln, "", "")
}

func (p *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f := p.match(r); f != nil {
		answer(w, r, f)
		return
	}
	p.forward.ServeHTTP(w, r)
}

// match returns the fault that answers r, counting the answer.
func (p *httpProxy) match(r *http.Request) *fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.matches(r) {
			f.answered = append(f.answered, time.Now().UnixMilli())
			if f.left > 0 {
				f.left--
			}
			answer := *f
			return &answer
		}
	}
	return nil
}

var reasons = map[int]string{
	http.StatusConflict:            "Conflict",
	http.StatusTooManyRequests:     "TooManyRequests",
	http.StatusInternalServerError: "InternalError",
	http.StatusServiceUnavailable:  "ServiceUnavailable",
	http.StatusGatewayTimeout:      "Timeout",
}

// answer writes a Status like the API server's, with Retry-After only as a header: clients
// must honour the header itself.
func answer(w http.ResponseWriter, r *http.Request, f *fault) {
	body, _ := json.Marshal(map[string]any{
		"kind":       "Status",
		"apiVersion": "v1",
		"metadata":   map[string]any{},
		"status":     "Failure",
		"message":    fmt.Sprintf("injected by faultproxy (fault %d): %s %s", f.id, r.Method, r.URL.Path),
		"reason":     reasons[f.code],
		"code":       f.code,
	})
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.code)
	_, _ = w.Write(body)
}

func (p *httpProxy) command(words []string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch words[0] {
	case "fault":
		if len(words) < 4 {
			return "error usage: fault CODE METHOD PATH-PREFIX [retry-after=SECONDS] [times=N]"
		}
		code, err := strconv.Atoi(words[1])
		if err != nil || code < 400 || code > 599 {
			return "error bad code " + words[1]
		}
		p.nextID++
		f := &fault{id: p.nextID, code: code, method: words[2], prefix: words[3], left: -1}
		for _, opt := range words[4:] {
			k, v, _ := strings.Cut(opt, "=")
			n, err := strconv.Atoi(v)
			switch {
			case err != nil || n < 0:
				return "error bad option " + opt
			case k == "retry-after":
				f.retryAfter = n
			case k == "times":
				f.left = n
			default:
				return "error unknown option " + opt
			}
		}
		p.faults = append(p.faults, f)
		return fmt.Sprintf("ok %d", f.id)
	case "times":
		if len(words) != 2 {
			return "error usage: times ID"
		}
		for _, f := range p.faults {
			if strconv.Itoa(f.id) == words[1] {
				out := "ok"
				for _, t := range f.answered {
					out += " " + strconv.FormatInt(t, 10)
				}
				return out
			}
		}
		return "error no fault " + words[1]
	case "clear":
		// Their answer times stay readable; the faults answer no more.
		for _, f := range p.faults {
			f.left = 0
		}
		return "ok"
	}
	return "error unknown command " + words[0]
}

// selfSigned makes the certificate the proxy presents on 127.0.0.1 and the CA that signs
// it (a CA certificate cannot serve: rustls refuses a CA as the server's own certificate).
func selfSigned() (tls.Certificate, []byte, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "faultproxy-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "faultproxy"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), err
}
