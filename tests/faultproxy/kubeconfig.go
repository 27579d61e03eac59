package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// kubeconfig is what the proxy needs of an admin kubeconfig: the first cluster's address and
// CA, the first user's client certificate, and the text itself to rewrite.
type kubeconfig struct {
	text     string
	server   string
	caData   []byte // PEM
	certData []byte // PEM
	keyData  []byte // PEM
}

// readKubeconfig reads the first value of each field it needs, line by line: the file is
// one the local control plane (or kubectl) wrote, one key per line.
func readKubeconfig(path string) (*kubeconfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kc := &kubeconfig{text: string(raw)}
	fields := map[string]*[]byte{
		"certificate-authority-data": &kc.caData,
		"client-certificate-data":    &kc.certData,
		"client-key-data":            &kc.keyData,
	}
	lines := bufio.NewScanner(bytes.NewReader(raw))
	for lines.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(lines.Text()), ":")
		if !ok {
			continue
		}
		value = strings.Trim(strings.TrimSpace(value), `"'`)
		if key == "server" && kc.server == "" {
			kc.server = value
		}
		if dst, ok := fields[key]; ok && *dst == nil {
			if *dst, err = base64.StdEncoding.DecodeString(value); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, key, err)
			}
		}
	}
	if kc.server == "" || kc.caData == nil || kc.certData == nil || kc.keyData == nil {
		return nil, fmt.Errorf("%s: needs server, certificate-authority-data, client-certificate-data and client-key-data inline", path)
	}
	return kc, nil
}

// hostPort is the API server's host:port.
func (kc *kubeconfig) hostPort() string {
	u, err := url.Parse(kc.server)
	if err != nil {
		return kc.server
	}
	return u.Host
}

// writeThrough writes the kubeconfig with the server replaced by the proxy and the CA by the
// one that signs what the proxy presents.
func (kc *kubeconfig) writeThrough(path, server string, caPEM []byte) error {
	var out strings.Builder
	lines := bufio.NewScanner(strings.NewReader(kc.text))
	for lines.Scan() {
		line := lines.Text()
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		key, _, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch key {
		case "server":
			line = indent + "server: " + server
		case "certificate-authority-data":
			line = indent + "certificate-authority-data: " + base64.StdEncoding.EncodeToString(caPEM)
		}
		out.WriteString(line + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
