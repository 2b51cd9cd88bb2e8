package sftp_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/passerelle/passerelle/connectors/sftp"
)

// Depositing a billing file in the in-process server, as the sandbox does.
func ExampleUploader_Upload() {
	dir, err := os.MkdirTemp("", "depot")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Mkdir(filepath.Join(dir, "depot"), 0o755); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	srv, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: dir, User: "passerelle", Password: "pw"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := srv.WriteKnownHosts(knownHosts); err != nil {
		log.Fatal(err)
	}

	up, err := sftp.NewUploader(sftp.Config{
		Addr:           srv.Addr(),
		User:           "passerelle",
		Password:       "pw",
		KnownHostsFile: knownHosts,
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := up.Upload(ctx, "clients_a_facturer_2025-01.csv", []byte("periode;reference_client\r\n2025-01;C000001\r\n"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.RemotePath, res.Bytes)
	// Output: /depot/clients_a_facturer_2025-01.csv 43
}
