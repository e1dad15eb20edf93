// Command conveyor-s3 is the test bed's S3-compatible object store: rclone's gofakes3 (the
// server behind `rclone serve s3`) with its in-memory backend, on one loopback address, that
// accepts only AWS Signature V4 requests signed with the one key pair it is given.
//
// The key pair comes from the environment, not the command line, so it is not in `ps`.
// Objects live in memory: a restart empties the store, which is what a test bed wants.
package main

import (
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
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("bad -listen %q: %v", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("-listen %q: only a loopback IP address is allowed", *listen)
	}
	access, secret := os.Getenv("S3SERVER_ACCESS_KEY"), os.Getenv("S3SERVER_SECRET_KEY")
	if access == "" || secret == "" {
		log.Fatal("S3SERVER_ACCESS_KEY and S3SERVER_SECRET_KEY must both be set")
	}

	faker := gofakes3.New(
		s3mem.New(),
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
	log.Printf("conveyor-s3 listening on %s", *listen)
	log.Fatal(server.ListenAndServe())
}
