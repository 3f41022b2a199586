// Package validate checks the Kubernetes manifests in deploy/k8s, in its
// tests only: every YAML file decodes strictly (no unknown or duplicate
// field) into the Kubernetes API type its apiVersion and kind name, or into
// kustomize's Kustomization; every base and overlay builds with kustomize;
// and what they build follows the deployment's rules (docs/DEPLOY.md):
//
//   - every container runs the cloister image as a non-root user with a
//     read-only root filesystem, no privilege escalation and no
//     capabilities, with CPU and memory requests and a memory limit;
//   - its arguments are a cloister command and flags that command has
//     (read from the help of the cloister binary built from this
//     repository), and every path they name is on a mounted volume (the
//     state on a writable one);
//   - a container that serves ports has readiness and liveness probes on
//     them, and its --listen, --metrics and --health flags bind the ports
//     its grpc, metrics and health ports declare; one that serves none is a
//     node, which only dials out;
//   - Services, NetworkPolicies and volumes point at pods, ports and claims
//     that exist.
//
// It is a module of its own so that k8s.io/api and kustomize stay out of the
// cloister binary's module: `cd deploy/k8s/validate && go test ./...`
// (make test runs it).
package validate
