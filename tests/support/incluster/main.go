// incluster: GET a path of the API server the way an in-cluster client does (the
// KUBERNETES_SERVICE_HOST/PORT env, the ServiceAccount's token and CA), print the status code
// and the body's start, exit 0 on a 2xx. In the container node's test image (busybox's wget
// cannot speak the API server's TLS).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	token, err := os.ReadFile(sa + "token")
	check(err)
	caPEM, err := os.ReadFile(sa + "ca.crt")
	check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}}}
	host := net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	req, err := http.NewRequest("GET", "https://"+host+os.Args[1], nil)
	check(err)
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := client.Do(req)
	check(err)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	fmt.Printf("incluster %s %d %s\n", host, resp.StatusCode, body)
	if resp.StatusCode/100 != 2 {
		os.Exit(1)
	}
}

func check(err error) {
	if err != nil {
		fmt.Println("incluster error:", err)
		os.Exit(2)
	}
}
