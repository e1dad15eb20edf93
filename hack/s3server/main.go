// Command conveyor-s3 is the test bed's S3-compatible object store: rclone's gofakes3 (the
// server behind `rclone serve s3`) with its in-memory backend, on one loopback address, that
// accepts only AWS Signature V4 requests signed with the one key pair it is given.
//
// The key pair comes from the environment, not the command line, so it is not in `ps`.
// Objects live in memory: a restart empties the store, which is what a test bed wants.
//
// With -tls-listen, -tls-cert and -tls-key it serves HTTPS too, on a second address (the test
// bed's, for the clients that verify the store with a CA file: CONVEYOR_S3_CA_FILE).
//
// The chart's store.bundled runs it too, for trying Conveyor: in a pod of its own network
// namespace, with -allow-non-loopback, and -bucket to make the bucket that a restart lost.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback only)")
	anyAddress := flag.Bool("allow-non-loopback", false,
		"allow a -listen address that is not loopback (a pod's own IP)")
	tlsListen := flag.String("tls-listen", "", "an address to serve HTTPS on too (loopback only)")
	tlsCert := flag.String("tls-cert", "", "the PEM certificate of -tls-listen")
	tlsKey := flag.String("tls-key", "", "the PEM private key of -tls-listen")
	var buckets []string
	flag.Func("bucket", "a bucket to make at start (repeatable): the store starts empty",
		func(name string) error { buckets = append(buckets, name); return nil })
	flag.Parse()

	checkAddress("-listen", *listen, *anyAddress)
	if *tlsListen != "" {
		checkAddress("-tls-listen", *tlsListen, *anyAddress)
		if *tlsCert == "" || *tlsKey == "" {
			log.Fatal("-tls-listen needs -tls-cert and -tls-key")
		}
	}
	access, secret := os.Getenv("S3SERVER_ACCESS_KEY"), os.Getenv("S3SERVER_SECRET_KEY")
	if access == "" || secret == "" {
		log.Fatal("S3SERVER_ACCESS_KEY and S3SERVER_SECRET_KEY must both be set")
	}

	backend := s3mem.New()
	for _, bucket := range buckets {
		if err := gofakes3.ValidateBucketName(bucket); err != nil {
			log.Fatalf("-bucket %q: %v", bucket, err)
		}
		if err := backend.CreateBucket(context.Background(), bucket); err != nil && !gofakes3.IsAlreadyExists(err) {
			log.Fatalf("-bucket %q: %v", bucket, err)
		}
	}
	faker := gofakes3.New(
		backend,
		gofakes3.WithV4Auth(map[string]string{access: secret}),
		gofakes3.WithIntegrityCheck(true),
		gofakes3.WithoutVersioning(),
		gofakes3.WithLogger(gofakes3.StdLog(log.New(os.Stderr, "", log.LstdFlags), gofakes3.LogErr, gofakes3.LogWarn)),
	)
	server := &http.Server{
		Addr:              *listen,
		Handler:           faker.Server(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	if *tlsListen != "" {
		secure := &http.Server{
			Addr:              *tlsListen,
			Handler:           server.Handler,
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		}
		go func() {
			log.Printf("conveyor-s3 listening with TLS on %s", *tlsListen)
			log.Fatal(secure.ListenAndServeTLS(*tlsCert, *tlsKey))
		}()
	}
	log.Printf("conveyor-s3 listening on %s", *listen)
	log.Fatal(server.ListenAndServe())
}

// checkAddress stops the server unless address is host:port with a loopback IP (or any IP,
// with -allow-non-loopback).
func checkAddress(flagName, address string, anyAddress bool) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		log.Fatalf("bad %s %q: %v", flagName, address, err)
	}
	if ip := net.ParseIP(host); ip == nil || (!ip.IsLoopback() && !anyAddress) {
		log.Fatalf("%s %q: only a loopback IP address is allowed (without -allow-non-loopback)", flagName, address)
	}
}
