// Package deploy holds no code: it is the home of the deployment files (the Dockerfile at the
// repository root, docker/, compose/, systemd/, kubernetes/) and of the tests that check them.
//
//   - systemd_test.go: the unit passes `systemd-analyze verify` and keeps its hardening.
//   - kubernetes_test.go: the manifests parse and the fields that matter hold (3 replicas,
//     headless service, volumes, non-root, probes, disruption budget, per-pod configs).
//   - compose_test.go: the compose file parses, its config and environment validate.
//   - docker_test.go: builds the image from locally made base images, runs a single node with
//     no config as non-root, then a 3-node cluster on a private Docker network (node1 bootstraps,
//     node2 and node3 join with a join token): registration and replication over SIP, the leader
//     killed, a node partitioned and healed; then the compose file's cluster. The SIP side is a
//     small UDP user agent of its own (sipua_test.go), which also places a call through a second
//     node to the room registered on the first (calls_test.go); PORTCULLIS_DEPLOY_KEEP=1 leaves the containers
//     and images behind for inspection.
//
// Tests that need a program (systemd-analyze, docker, docker-compose) skip loudly without it and
// fail instead when PORTCULLIS_CI is set (see internal/testpeer).
package deploy
