package cluster

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// RunCLI runs `portcullis cluster <init|join-token> [flags]` (args start after "cluster") and
// returns the exit status: 0 on success, 1 on failure, 2 on bad usage.
//
//	init        --data-dir ./data --node-id <hostname> --advertise 127.0.0.1:7000
//	            creates the cluster CA and this node's certificate; prints the CA fingerprint.
//	join-token  --data-dir ./data [--advertise <this node's cluster address>] [--ttl 1h]
//	            prints a join token for a new node (run it on the node that ran init).
func RunCLI(args []string, stdout, stderr io.Writer) int {
	usage := func() int {
		fmt.Fprintln(stderr, "usage: portcullis cluster init [--data-dir DIR] [--node-id ID] [--advertise HOST:PORT]")
		fmt.Fprintln(stderr, "       portcullis cluster join-token [--data-dir DIR] [--advertise HOST:PORT] [--ttl 1h]")
		return 2
	}
	if len(args) == 0 {
		return usage()
	}
	def := DefaultConfig()
	fs := flag.NewFlagSet("cluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", def.DataDir, "data directory")
	advertise := fs.String("advertise", "", "this node's cluster address as other nodes dial it (default: recorded in the data dir, else "+def.Bind+")")
	switch args[0] {
	case "init":
		nodeID := fs.String("node-id", "", "this node's ID (default: the host name)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		addr := *advertise
		if addr == "" {
			addr = def.Bind
		}
		if *nodeID == "" {
			*nodeID = defaultNodeID(*dataDir)
		}
		if err := checkAdvertise(addr); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if err := Init(*dataDir, *nodeID, addr); err != nil {
			fmt.Fprintln(stderr, err)
			if errors.Is(err, ErrExists) {
				fmt.Fprintln(stderr, "the cluster CA already exists; nothing changed")
			}
			return 1
		}
		ca, err := readCert(tlsPath(*dataDir, caCertFile))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "cluster CA created in %s\nnode: %s at %s\nCA SHA-256: %s\n",
			tlsPath(*dataDir, ""), *nodeID, addr, Fingerprint(ca))
		return 0
	case "join-token":
		ttl := fs.Duration("ttl", DefaultTokenTTL, "how long the token stays valid")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		tok, err := NewJoinToken(*dataDir, *advertise, *ttl)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "valid until %s; start the new node with cluster.join_token set to it\n",
			time.Now().Add(*ttl).UTC().Format(time.RFC3339))
		return 0
	case "-h", "--help", "help":
		usage()
		return 0
	}
	fmt.Fprintf(stderr, "unknown cluster command %q\n", args[0])
	return usage()
}
